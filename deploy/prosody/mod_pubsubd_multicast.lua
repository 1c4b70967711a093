-- mod_pubsubd_multicast: an XEP-0033 (Extended Stanza Addressing) multicast service
-- for Prosody, shipped with pubsubd.
--
-- Prosody parses every stanza a component sends. A pubsub component that notifies
-- 1,000 subscribers writes the same item 1,000 times and Prosody parses it 1,000 times;
-- that parse is most of what a notification costs Prosody. ejabberd's mod_multicast
-- lets a component send the item once with a list of recipients; Prosody 0.12 ships no
-- such service, and this module is one. pubsubd finds it in the host's disco#items on
-- every new stream (or uses the component its `multicast` setting names).
--
-- `pubsubd prosody-module > /usr/lib/prosody/modules/mod_pubsubd_multicast.lua`
-- installs it; load it as a component of its own:
--
--   Component "multicast.example.org" "pubsubd_multicast"
--       multicast_senders = { "pubsub.example.org" }   -- who may use it
--       multicast_limit = 100                           -- recipients per stanza
--
-- What it does with a <message/> addressed to it (XEP-0033 §5, for messages; presence
-- and IQ are not multicast here):
--   * a sender that may not use it gets <forbidden/>; by default this server's own
--     components may (pubsubd is one), and no user or remote entity; with
--     `multicast_senders`, only the JIDs and domains listed;
--   * no <addresses/>, or an address it cannot deliver to (a `uri`, a malformed `jid`),
--     gets <bad-request/> or <jid-malformed/>; more recipients than `multicast_limit`
--     get <not-acceptable/>; in every case nothing is delivered;
--   * otherwise each 'to', 'cc' and 'bcc' address not yet marked delivered='true' gets
--     one copy, with the outer 'to' set to it, in the order listed (a JID listed twice
--     gets one). The copies carry the address block without the 'bcc' addresses and
--     with the 'to' and 'cc' ones marked delivered; a block left empty is dropped, so a
--     list of bcc addresses only arrives as the plain stanza. (§5 step 8 could be read
--     as giving each bcc recipient its own bcc address back; ejabberd's mod_multicast
--     strips them all, and so does this module.)
--
-- The copies are routed before the next stanza from the same sender is handled, so a
-- sender that follows its groups with a disco#info request to this service gets the
-- answer after every copy has been handed to its recipient's session: pubsubd uses
-- that answer as its delivery barrier.

local st = require "util.stanza";
local jid = require "util.jid";
local dataforms = require "util.dataforms";

local NS = "http://jabber.org/protocol/address";

local senders = module:get_option_set("multicast_senders", {});
local limit = module:get_option_number("multicast_limit", 100);

module:depends("disco");
module:add_identity("service", "multicast", module:get_option_string("name", "Multicast"));
module:add_feature(NS);
-- The limit, as XEP-0128 extended information (the form ejabberd's service sends).
local limits = dataforms.new {
	{ name = "FORM_TYPE", type = "hidden", value = NS };
	{ name = "message", type = "text-single" };
};
module:add_extension(limits:form({ message = tostring(limit) }, "result"));

-- Whether `from` may have stanzas copied out.
local function may_send(from)
	local node, host = jid.split(from);
	if not host then
		return false;
	end
	if senders:empty() then
		local sender = prosody.hosts[host];
		return sender ~= nil and sender.type == "component";
	end
	local bare = node and (node .. "@" .. host) or host;
	return senders:contains(bare) or senders:contains(host);
end

local function refuse(origin, stanza, kind, condition, text)
	module:log("debug", "refused a stanza from %s: %s (%s)", stanza.attr.from, condition, text);
	origin.send(st.error_reply(stanza, kind, condition, text));
	return true;
end

module:hook("message/host", function (event)
	local origin, stanza = event.origin, event.stanza;
	if stanza.attr.type == "error" then
		return true; -- never answer an error
	end
	if not may_send(stanza.attr.from) then
		return refuse(origin, stanza, "auth", "forbidden", "Not allowed to use this multicast service");
	end
	local block = stanza:get_child("addresses", NS);
	if not block then
		return refuse(origin, stanza, "modify", "bad-request", "No addresses to deliver to");
	end

	local recipients, seen, kept = {}, {}, {};
	for address in block:childtags("address", NS) do
		local kind = address.attr.type;
		local deliver = (kind == "to" or kind == "cc" or kind == "bcc") and address.attr.delivered ~= "true";
		if deliver then
			if address.attr.uri then
				return refuse(origin, stanza, "modify", "jid-malformed", "Only JID addresses are supported");
			end
			local to = address.attr.jid and jid.prep(address.attr.jid);
			if not to then
				return refuse(origin, stanza, "modify", "jid-malformed", "An address has no valid JID");
			end
			if not seen[to] then
				seen[to] = true;
				recipients[#recipients + 1] = to;
			end
		end
		if kind ~= "bcc" then
			local attr = {};
			for k, v in pairs(address.attr) do attr[k] = v; end
			if deliver then attr.delivered = "true"; end
			kept[#kept + 1] = attr;
		end
	end
	if #recipients > limit then
		return refuse(origin, stanza, "modify", "not-acceptable",
			("At most %d recipients per stanza"):format(limit));
	end

	-- What every recipient gets: the stanza as it came, its address block rewritten.
	stanza:remove_children("addresses", NS);
	if #kept > 0 then
		local rewritten = st.stanza("addresses", { xmlns = NS });
		for _, attr in ipairs(kept) do
			rewritten:tag("address", attr):up();
		end
		stanza:add_direct_child(rewritten);
	end
	-- One stanza, re-addressed for each recipient: Prosody's MUC sends a groupchat
	-- message to its occupants the same way, and modules that keep or change a stanza
	-- they are handed (smacks, CSI, MAM, carbons) clone it first. In the benchmarks
	-- this cost Prosody about 40 % less CPU per notification than a deep copy per
	-- recipient, which is what Prosody's own pubsub makes (docs/benchmarks.md).
	for _, to in ipairs(recipients) do
		stanza.attr.to = to;
		module:send(stanza);
	end
	stanza.attr.to = module.host;
	return true;
end);
