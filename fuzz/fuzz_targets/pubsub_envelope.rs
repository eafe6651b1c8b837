//! phoenix_pubsub_redis envelopes: decoding any bytes off the Redis channel never panics; an
//! envelope that decodes to a broadcast encodes (plain or compressed, either atom encoding) to
//! bytes that decode to the same envelope, so what phx-server relays is what it received.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phx_protocol::etf::{AtomEncoding, DecodeLimits};
use phx_protocol::pubsub_redis::{self, EncodeOptions, Envelope};

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::default();
    let Ok(envelope) = pubsub_redis::decode(data, &limits) else {
        return;
    };
    let _ = envelope.is_for(&envelope.node);
    let Some(broadcast) = envelope.clone().into_broadcast() else {
        return;
    };
    // The re-encoded term may be a little larger than the input inflated to (an atom in the
    // payload comes back as a binary, two bytes longer), so it is read back with room to spare.
    let roomy = DecodeLimits {
        max_uncompressed: limits.max_uncompressed * 2,
        max_binary: limits.max_binary * 2,
        ..limits
    };
    for opts in [
        EncodeOptions::default(),
        EncodeOptions {
            atoms: AtomEncoding::Utf8,
            compression_level: 6,
        },
    ] {
        let bytes = pubsub_redis::encode(&broadcast, &opts);
        let back = pubsub_redis::decode(&bytes, &roomy)
            .unwrap_or_else(|e| panic!("{broadcast:?} encodes to bytes that do not decode: {e}"));
        assert_eq!(back, envelope, "round trip with {opts:?}");
        assert_eq!(back.into_broadcast().map(|b| pubsub_redis::encode(&b, &opts)), Some(bytes));
    }
    let _: Envelope = broadcast.into();
});
