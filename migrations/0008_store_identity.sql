-- A random number given to the store once, shared by every pubsubd process attached to
-- it. Their barrier pings carry it, so a ping without it on the component JID comes
-- from a stranger: another program (an old pubsubd on another database, say) that the
-- XMPP server balances this JID's traffic with.
CREATE TABLE store_identity (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    tag       BIGINT NOT NULL
);
