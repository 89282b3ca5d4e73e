//! Any bytes as a syslog TCP stream, cut into reads at the places the input
//! says: framed or refused, never a panic, and no frame over the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use soc_collector::syslog::framing::Framer;

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, stream)) = data.split_first() else {
        return;
    };
    let max = 64 + usize::from(cuts) * 4;
    let mut framer = Framer::new(max);
    let mut frames = Vec::new();
    // Reads of varying sizes, as a socket hands them out.
    let step = usize::from(cuts % 13) + 1;
    for chunk in stream.chunks(step) {
        if framer.push(chunk, &mut frames).is_err() {
            break;
        }
    }
    framer.finish(&mut frames);
    for f in &frames {
        assert!(
            f.bytes.len() <= max,
            "a frame of {} bytes over {max}",
            f.bytes.len()
        );
    }
});
