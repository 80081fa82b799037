//! `shoal bench shuffle`: the data plane's throughput between two nodes in one process, over
//! the real transport (tcp → noise → yamux on 127.0.0.1). One object is fetched over
//! `/shoal/data/1` exactly as a reducer fetches a map output (CBOR `Chunk` frames, the node's
//! own serve and fetch code); the baselines are the same bytes copied raw over a libp2p
//! stream of the same connection stack, and over a plain loopback TCP socket.

use clap::Args;

/// `shoal bench shuffle` flags.
#[derive(Debug, Args)]
pub struct ShuffleArgs {
    /// Object size, MiB.
    #[arg(long, default_value_t = 1024)]
    size_mb: u64,
    /// Runs of each contender (the best is kept).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// Run the benchmark.
pub fn run(args: ShuffleArgs) -> anyhow::Result<bool> {
    println!(
        "shuffle: one {} MiB object from node A to node B on 127.0.0.1, best of {}",
        args.size_mb, args.runs
    );
    let best = shoal_node::storage::bench::measure(args.size_mb, args.runs)?;
    let rate = |s: f64| args.size_mb as f64 / s;
    println!(
        "  /shoal/data/1 (CBOR chunks)     {:>8.0} MiB/s",
        rate(best.data_plane)
    );
    println!(
        "  bare libp2p stream (same stack) {:>8.0} MiB/s",
        rate(best.bare_stream)
    );
    println!(
        "  raw loopback TCP                {:>8.0} MiB/s",
        rate(best.tcp)
    );
    let ratio = best.bare_stream / best.data_plane;
    println!(
        "  data plane / bare stream: {ratio:.2}x (goal >= 0.8x){}",
        if ratio >= 0.8 { "" } else { " — NOT MET" }
    );
    println!(
        "  into a file (a reducer's fetch)  {:>8.0} MiB/s",
        rate(best.to_file)
    );
    println!(
        "  its checksum (taken as it arrives) {:>6.0} MiB/s",
        rate(best.check)
    );
    let cost = best.check / best.to_file;
    println!(
        "  checksums cost {:.1}% of the fetch's time (goal < 5%){}",
        cost * 100.0,
        if cost < 0.05 { "" } else { " — NOT MET" }
    );
    Ok(true)
}
