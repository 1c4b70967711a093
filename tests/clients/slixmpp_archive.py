#!/usr/bin/env python3
"""Reads a pubsub node's archive (XEP-0313 on a node, XEP-0442) with slixmpp's own
xep_0313 plugin, unmodified, and prints what it got as JSON on one line.

slixmpp's plugin has no way to name a node (its query has no `node` attribute, and
`iterate` takes none), so an outgoing stanza filter adds `node` to the plugin's
`<query xmlns='urn:xmpp:mam:2'/>`. Everything else is the plugin's: the query, the
RSM paging, the collection of `<result/>` messages by queryid and the reading of
`<fin/>`.

Usage: slixmpp_archive.py JID PASSWORD HOST PORT SERVICE NODE PAGE_SIZE
Prints {"forward": [...], "backward": [...], "pages": n} with the pubsub item ids
in the order the plugin yielded them and the queries the forward read took, or
{"error": ...} and exits non-zero.
"""

import asyncio
import json
import logging
import sys
import traceback

import slixmpp

NS_MAM = "urn:xmpp:mam:2"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
TIMEOUT = 30


class ArchiveReader(slixmpp.ClientXMPP):
    def __init__(self, jid, password, service, node, page_size):
        super().__init__(jid, password)
        self.service = service
        self.node = node
        self.page_size = page_size
        self.outcome = None
        self.queries = 0
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0059")
        self.register_plugin("xep_0297")
        self.register_plugin("xep_0313")
        # The test servers offer no TLS on loopback.
        self["feature_mechanisms"].unencrypted_plain = True
        self.add_filter("out", self.name_the_node)
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("failed_auth", lambda _: self.fail("authentication failed"))

    def name_the_node(self, stanza):
        query = stanza.xml.find("{%s}query" % NS_MAM)
        if query is not None and stanza.xml.tag.endswith("iq"):
            query.set("node", self.node)
            self.queries += 1
        return stanza

    def fail(self, why):
        self.outcome = {"error": why}
        self.disconnect()

    async def read(self, reverse):
        """The item ids in the order the plugin yields its messages (newest first
        when reversed), and how many queries (pages) it sent for them."""
        ids = []
        queries_before = self.queries
        async for message in self["xep_0313"].iterate(
            jid=self.service, reverse=reverse, rsm={"max": self.page_size}
        ):
            forwarded = message["mam_result"]["forwarded"]["stanza"]
            items = forwarded.xml.find("{%s}event/{%s}items" % (NS_EVENT, NS_EVENT))
            if items is None:
                raise RuntimeError("a result without event items: %s" % message)
            for item in items:
                ids.append(item.get("id"))
        return ids, self.queries - queries_before

    async def start(self, _event):
        try:
            forward, pages = await asyncio.wait_for(self.read(False), TIMEOUT)
            backward, _ = await asyncio.wait_for(self.read(True), TIMEOUT)
            self.outcome = {"forward": forward, "backward": backward, "pages": pages}
        except Exception as e:  # the reason goes to the test
            self.outcome = {"error": "%s: %s" % (type(e).__name__, e), "trace": traceback.format_exc()}
        self.disconnect()


def main():
    jid, password, host, port, service, node, page_size = sys.argv[1:8]
    logging.basicConfig(level=logging.ERROR)
    reader = ArchiveReader(jid, password, service, node, int(page_size))
    reader.connect((host, int(port)), use_ssl=False, force_starttls=False, disable_starttls=True)
    reader.loop.run_until_complete(asyncio.wait_for(reader.disconnected, TIMEOUT * 3))
    outcome = reader.outcome or {"error": "no session"}
    print(json.dumps(outcome))
    sys.exit(1 if "error" in outcome else 0)


if __name__ == "__main__":
    main()
