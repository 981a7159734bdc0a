//! The load harness's baseline: a monitor that only frames and decodes.
//! It connects to the scheduler at 127.0.0.1:PORT, does the handshake and
//! MON_LOGIN, then reads, cuts and decodes frames (MON_STATS texts into
//! their fields, as `benches/decode.rs` does) and keeps nothing, until
//! it has seen COUNT messages. It then prints `done COUNT` and waits for
//! its stdin to close, so that the harness can read its CPU time and peak
//! memory while it still lives.
//!
//! Run by `cargo run --release --example load -- e2e`, not by hand.

use icewatch::protocol::frame::{parse_frame, Frame, FrameError, MAX_MSG_SIZE};
use icewatch::protocol::handshake::handshake_blocking;
use icewatch::protocol::{Message, PROTOCOL_VERSION};
use std::io::{Read, Write};
use std::net::TcpStream;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().unwrap_or_default().parse()?;
    let count: u64 = args.next().unwrap_or_default().parse()?;
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    let version = handshake_blocking(&mut stream, PROTOCOL_VERSION)?;
    stream.write_all(Frame::encode(&Message::MonLogin, version).as_bytes())?;
    let mut buf = vec![0u8; 64 * 1024];
    let (mut filled, mut seen, mut invalid) = (0usize, 0u64, 0u64);
    while seen < count {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let got = stream.read(&mut buf[filled..])?;
        anyhow::ensure!(got > 0, "the scheduler closed after {seen} messages");
        filled += got;
        let mut input = &buf[..filled];
        loop {
            match parse_frame(input, MAX_MSG_SIZE) {
                Ok((rest, raw)) => {
                    match Message::decode(raw.ty, raw.body, version) {
                        // The statistics text is decoded into its fields,
                        // as in the codec's benchmark.
                        Ok(Message::MonStats(m)) => {
                            std::hint::black_box(m.stats());
                        }
                        Ok(m) => {
                            std::hint::black_box(&m);
                        }
                        Err(_) => invalid += 1,
                    }
                    seen += 1;
                    input = rest;
                }
                Err(FrameError::Incomplete { .. }) => break,
                Err(e) => anyhow::bail!("{e}"),
            }
        }
        let used = filled - input.len();
        buf.copy_within(used..filled, 0);
        filled -= used;
    }
    println!("done {seen} invalid {invalid}");
    std::io::stdout().flush()?;
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
    Ok(())
}
