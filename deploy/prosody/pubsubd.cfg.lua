-- Attach pubsubd to Prosody: add this to /etc/prosody/prosody.cfg.lua (or a file it
-- includes), then `prosodyctl reload`. Prosody listens for components on
-- component_ports (default 5347) on loopback.

component_ports = { 5347 }
component_interfaces = { "127.0.0.1" }

Component "pubsub.example.org"
    component_secret = "change-me"  -- the same secret pubsubd is given
