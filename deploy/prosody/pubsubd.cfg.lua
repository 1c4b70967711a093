-- Attach pubsubd to Prosody: add this to /etc/prosody/prosody.cfg.lua (or a file it
-- includes), then `prosodyctl reload`. Prosody listens for components on
-- component_ports (default 5347) on loopback.

component_ports = { 5347 }
component_interfaces = { "127.0.0.1" }

Component "pubsub.example.org"
    component_secret = "change-me"  -- the same secret pubsubd is given

-- Optional: notifications in groups (XEP-0033). Copy mod_pubsubd_multicast.lua (next to
-- this file) into a directory of your choosing, name it here, and set
-- `multicast = "multicast.example.org"` in pubsubd's configuration.
--
-- plugin_paths = { "/usr/local/lib/pubsubd/prosody" }
--
-- Component "multicast.example.org" "pubsubd_multicast"
--     multicast_senders = { "pubsub.example.org" }
--     multicast_limit = 100
