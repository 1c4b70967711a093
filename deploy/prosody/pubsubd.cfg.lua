-- Attach pubsubd to Prosody: add this to /etc/prosody/prosody.cfg.lua (or a file it
-- includes), then `prosodyctl reload`. Prosody listens for components on
-- component_ports (default 5347) on loopback.

-- Optional, for a Prosody that carries a large fan-out: a less eager garbage collector
-- raised what Prosody routed for pubsubd 1.6-2.2x in its benchmarks, for more memory
-- (docs/servers.md, "Prosody's garbage collector"; https://prosody.im/doc/advanced_gc).
-- One of:
-- gc = { mode = "generational" }                  -- Lua 5.4 only
-- gc = { mode = "incremental"; threshold = 200 }

component_ports = { 5347 }
component_interfaces = { "127.0.0.1" }

Component "pubsub.example.org"
    component_secret = "change-me"  -- the same secret pubsubd is given

-- Optional: notifications in groups (XEP-0033). Install the module with
-- `pubsubd prosody-module > /usr/lib/prosody/modules/mod_pubsubd_multicast.lua`;
-- pubsubd finds the component by itself.
--
-- Component "multicast.example.org" "pubsubd_multicast"
--     multicast_senders = { "pubsub.example.org" }
--     multicast_limit = 100

-- Optional: XEP-0356 privileges (docs/servers.md, "Privileges"): let pubsubd read
-- rosters and see its users' presence. mod_privilege comes with Debian's
-- prosody-modules and speaks urn:xmpp:privilege:2. It goes in modules_enabled, the
-- grant in the VirtualHost section, and the module on the component too (it hears of
-- the component's handshake there):
--
-- modules_enabled = { --[[ ... ]] "privilege" }
--
-- VirtualHost "example.org"
--     privileged_entities = {
--         ["pubsub.example.org"] = { roster = "get"; presence = "roster" };
--     }
--
-- Component "pubsub.example.org"
--     component_secret = "change-me"
--     modules_enabled = { "privilege" }
