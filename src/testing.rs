//! Test support shared across modules.

/// xorshift64: reproducible pseudo-random choices in tests, without a dependency (the seed must
/// not be 0).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn step(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (`n` > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.step() % n
    }

    /// An index below `n` (`n` > 0).
    pub(crate) fn next(&mut self, n: usize) -> usize {
        (self.step() % n as u64) as usize
    }
}

/// A routed chat message from bob@example.com/x to alice@example.com/r with `body`, as the route
/// hands it to the recipient's stream.
pub(crate) fn routed_chat(body: &str) -> crate::hooks::Acc {
    let s = crate::xml::Stanza::parse(
        format!("<message from='bob@example.com/x' to='alice@example.com/r' type='chat'><body>{body}</body></message>")
            .into_bytes(),
    )
    .expect("a well-formed stanza");
    let from = crate::jid::Jid::parse("bob@example.com/x").expect("a valid JID");
    let to = crate::jid::Jid::parse("alice@example.com/r").expect("a valid JID");
    crate::hooks::Acc::new(s, from, to, crate::shard::ShardId(0))
}
