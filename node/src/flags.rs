//! `shoal node`'s flags: the command line of a node (each with its `SHOAL_…` environment
//! twin and its key in the config file), the user's contract. `daemon` reads them.

use std::path::PathBuf;

use clap::Args;

/// `--listen`'s default: every interface, port 7071.
pub const DEFAULT_LISTEN: &str = "/ip4/0.0.0.0/tcp/7071";

/// `--http`'s default: loopback, port 7070.
pub const DEFAULT_HTTP: &str = "127.0.0.1:7070";

/// `shoal node` flags.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Data directory: identity, Raft log, stored data.
    #[arg(
        help_heading = "Storage",
        long,
        default_value = "./shoal-data",
        env = "SHOAL_DATA"
    )]
    pub data: PathBuf,
    /// p2p listen multiaddr; repeatable (default: all interfaces, port 7071).
    #[arg(
        help_heading = "Network",
        long,
        env = "SHOAL_LISTEN",
        value_delimiter = ',',
        default_value = DEFAULT_LISTEN
    )]
    pub listen: Vec<String>,
    /// HTTP API address. Anything but a loopback address needs --api-token.
    #[arg(
        help_heading = "Network",
        long,
        env = "SHOAL_HTTP",
        default_value = DEFAULT_HTTP
    )]
    pub http: String,
    /// A name the HTTP API answers to besides loopback names and the --http address (what
    /// clients put in `Host`, e.g. the machine's DNS name); repeatable. Requests naming any
    /// other host are refused (421), so a web page cannot reach the API by DNS rebinding.
    #[arg(
        help_heading = "Network",
        long,
        env = "SHOAL_HTTP_HOST",
        value_delimiter = ','
    )]
    pub http_host: Vec<String>,
    /// A file holding the HTTP API's token: every request must then carry
    /// `Authorization: Bearer TOKEN`. Required when --http is not a loopback address.
    #[arg(help_heading = "Network", long, env = "SHOAL_API_TOKEN_FILE")]
    pub api_token: Option<PathBuf>,
    /// A peer to dial, as a multiaddr with or without /p2p/ID; repeatable.
    #[arg(
        help_heading = "Network",
        long,
        env = "SHOAL_PEER",
        value_delimiter = ','
    )]
    pub peer: Vec<String>,
    /// Uninitialized nodes to wait for before bootstrapping a new cluster.
    #[arg(
        help_heading = "Cluster",
        long,
        env = "SHOAL_EXPECT",
        default_value_t = 3
    )]
    pub expect: usize,
    /// Do not discover peers by mDNS.
    #[arg(help_heading = "Network", long, env = "SHOAL_NO_MDNS")]
    pub no_mdns: bool,
    /// A node of a cluster on this one machine: listen on loopback at the first free pair of
    /// ports from 7070 (the API) and 7071 (p2p) up, two by two, and find the other `--local`
    /// nodes there (no mDNS; not with --listen or --http). Start it in a directory of
    /// its own, as each node keeps its data in ./shoal-data.
    #[arg(help_heading = "Network", long, env = "SHOAL_LOCAL")]
    pub local: bool,
    /// For tests: the first port `--local` tries instead of 7070.
    #[arg(long, hide = true, env = "SHOAL_LOCAL_BASE", default_value_t = 7070)]
    pub local_base: u16,
    /// Cluster key file (from `shoal keygen`): only nodes with the key can connect. Needed
    /// when --listen is not a loopback address (unless --insecure).
    #[arg(help_heading = "Network", long, env = "SHOAL_CLUSTER_KEY")]
    pub cluster_key: Option<PathBuf>,
    /// Listen beyond loopback without a cluster key: any host that can reach the port may
    /// join the cluster and run code on this machine. Trusted, isolated networks only.
    #[arg(help_heading = "Network", long, env = "SHOAL_INSECURE")]
    pub insecure: bool,
    /// Write {"peer_id", "addrs", "http", "node_id"} here once listening.
    #[arg(help_heading = "Network", long, env = "SHOAL_READY_FILE")]
    pub ready_file: Option<PathBuf>,
    /// Raft heartbeat interval, ms.
    #[arg(
        help_heading = "Cluster",
        long,
        env = "SHOAL_HEARTBEAT_MS",
        default_value_t = 100
    )]
    pub heartbeat_ms: u64,
    /// Raft election timeout range, ms (MIN-MAX).
    #[arg(
        help_heading = "Cluster",
        long,
        env = "SHOAL_ELECTION_MS",
        default_value = "300-400"
    )]
    pub election_ms: String,
    /// Most voters; further members stay learners.
    #[arg(
        help_heading = "Cluster",
        long,
        env = "SHOAL_VOTERS",
        default_value_t = 5
    )]
    pub voters: usize,
    /// Most learners (members that are not voters); further nodes join as plain workers,
    /// which get their assignments pushed by the manager instead of the whole Raft log.
    #[arg(help_heading = "Cluster", long, env = "SHOAL_LEARNERS", default_value_t = crate::cluster::node::DEFAULT_LEARNERS)]
    pub learners: usize,
    /// Tasks this node runs at once (default: its cores).
    #[arg(help_heading = "Tasks", long, env = "SHOAL_SLOTS")]
    pub slots: Option<u32>,
    /// Seconds of silence (no heartbeat) after which the manager declares a node lost: its
    /// running tasks go elsewhere and map outputs only it held are run again.
    #[arg(
        help_heading = "Cluster",
        long,
        env = "SHOAL_NODE_TIMEOUT",
        default_value_t = 5.0
    )]
    pub node_timeout: f64,
    /// Seconds a voter may stay silent before the leader replaces it with a live learner,
    /// or removes it while more than three voters remain (it stays a learner and becomes a
    /// voter again when it comes back).
    #[arg(
        help_heading = "Cluster",
        long,
        env = "SHOAL_VOTER_GRACE",
        default_value_t = 30.0
    )]
    pub voter_grace: f64,
    /// Ended jobs to keep in the job table (with their tasks, counters and output); the
    /// oldest beyond this are forgotten and their files deleted on every node.
    #[arg(
        help_heading = "Cluster",
        long,
        env = "SHOAL_RETAIN_JOBS",
        default_value_t = 100
    )]
    pub retain_jobs: usize,
    /// When the node runs as root, each job's task processes run as a uid of their own from
    /// this range (FIRST-LAST; systemd's dynamic users' by default), handed out in turn and
    /// given back when the job ends here: they cannot read the node's keys and database, nor
    /// another job's files or processes. Without root, tasks run as the node's own user
    /// under Landlock: run the node as a user of its own.
    #[arg(help_heading = "Tasks", long, env = "SHOAL_TASK_UIDS", default_value = "61184-65519", value_parser = crate::sandbox::uid_range)]
    pub task_uids: (u32, u32),
    /// When the node runs as root, run every job's task processes as this one user instead
    /// of a uid per job (`nobody`, say): jobs are then not kept from each other.
    #[arg(help_heading = "Tasks", long, env = "SHOAL_TASK_USER")]
    pub task_user: Option<String>,
    /// Memory limit of each task attempt, MiB (needs a writable cgroup; killed past it).
    #[arg(help_heading = "Tasks", long, env = "SHOAL_TASK_MEMORY")]
    pub task_memory: Option<u64>,
    /// Most processes and threads of each task attempt (needs a writable cgroup).
    #[arg(help_heading = "Tasks", long, env = "SHOAL_TASK_PIDS")]
    pub task_pids: Option<u64>,
    /// CPU weight of each task attempt, 1..10000 (cgroup v2 `cpu.weight`, where available).
    #[arg(help_heading = "Tasks", long, env = "SHOAL_TASK_CPU_WEIGHT")]
    pub task_cpu_weight: Option<u64>,
    /// Memory, MiB, that this node's tasks together leave to the node and the machine: every
    /// attempt's cgroup sits under one whose limit is the machine's memory (or the node's
    /// cgroup's) less this, so a task that allocates without bound is killed, not the node.
    /// Default: an eighth of the memory, from 512 to 4096 MiB. Needs a writable cgroup.
    #[arg(help_heading = "Tasks", long, env = "SHOAL_NODE_RESERVE_MB")]
    pub node_reserve_mb: Option<u64>,
    /// Take a Raft snapshot every N applied entries and keep N/2 entries behind it (default:
    /// every 5,000, keeping 1,000), for tests that need a joining node to catch up through a
    /// snapshot.
    #[arg(long, hide = true, env = "SHOAL_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,
    /// MiB this node keeps free on its data dir's disk: under it, it takes no upload (507),
    /// no copy of another node's data and no new task.
    #[arg(
        help_heading = "Storage",
        long,
        env = "SHOAL_MIN_FREE_MB",
        default_value_t = 1024
    )]
    pub min_free_mb: u64,
    /// The directory `--input node:GLOB` and `--input shared:GLOB` are read under (off
    /// unless given): every job's mapper may read what lies here, and nothing outside it.
    #[arg(help_heading = "Storage", long, env = "SHOAL_INPUT_ROOT")]
    pub input_root: Option<PathBuf>,
    /// On SIGTERM or Ctrl-C with tasks running: take no new task and give the running ones
    /// this long to finish before stopping, seconds (0: stop at once; they run again
    /// elsewhere).
    #[arg(
        help_heading = "Cluster",
        long,
        env = "SHOAL_DRAIN_SECS",
        default_value_t = 30.0
    )]
    pub drain_secs: f64,
    /// For tests only: speak this wire protocol version (MAJOR.MINOR) instead of the
    /// build's, to show how nodes of another protocol are refused.
    #[arg(long, hide = true, env = "SHOAL_TEST_PROTOCOL")]
    pub test_protocol: Option<shoal_net::wire::Protocol>,
    /// A fault to plant in this process, for tests (e.g. `worker-panic`).
    #[arg(long, hide = true, env = "SHOAL_PLANT")]
    pub plant: Vec<crate::planted::Fault>,
    /// Read settings from this TOML file, each key a flag's long name (`data =
    /// "/var/lib/shoal"`, `peer = ["/ip4/10.0.0.2/tcp/7071"]`, `no-mdns = true`); the
    /// command line and the flags' environment twins override it.
    #[arg(help_heading = "Configuration", long, env = "SHOAL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective settings as TOML, each with where it came from (command line,
    /// environment, config file or default), and exit.
    #[arg(help_heading = "Configuration", long)]
    pub print_config: bool,
}
