//! The job as an adversary of its cluster: what a task prints and reports is input like any
//! other. Three real `shoal node` processes on 127.0.0.1, one cluster test at a time.

use serde_json::Value;

use crate::common;
use crate::common::cluster::*;
use crate::common::three::*;
use crate::common::*;

/// A mapper whose counters are built to break the table: the engine's own counter at
/// `i64::MAX`, twice; its own at `i64::MAX`, twice; `-1`; a counter name of 1 MB. Then a
/// plain word count.
const LYING_MAPPER: &str = "#!/bin/sh
max=9223372036854775807
for i in 1 2; do
  echo \"reporter:counter:shoal,input_uploaded_bytes,$max\" >&2
  echo \"reporter:counter:app,big,$max\" >&2
done
echo 'reporter:counter:app,minus,-1' >&2
name=$(head -c 1048576 /dev/zero | tr '\\0' n)
echo \"reporter:counter:app,$name,1\" >&2
exec awk '{ for (i = 1; i <= NF; i++) print $i \"\\t1\" }'
";

#[test]
fn counters_a_mapper_forges_or_overflows_stop_no_node() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let c = three_nodes(dir.path());
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let map = write_program(&work, "map.sh", LYING_MAPPER);
    let reduce = write_program(&work, "reduce.sh", SUM_REDUCER_SH);
    let (input, text_in) = small_word_input(&work, 3, 400);
    let size: u64 = std::fs::read_dir(&input)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let (id, o) = c.submit(&[
        "--input",
        input.to_str().unwrap(),
        "--map",
        &map,
        "--reduce",
        &reduce,
        "-R",
        "2",
        "--wait",
    ]);
    assert!(o.status.success(), "the job succeeds: {}", text(&o));
    let job = c.job(c.follower, &id);
    let maps = i64::try_from(job.maps.total).unwrap();
    assert!(maps >= 3, "one map per file at least: {job}");
    let counters = &job.counters;
    let app = |name: &str| job.counter("app", name);
    // The engine's counter is the engine's: what the upload brought, not what a task said.
    assert_eq!(
        shoal_counter(&job, "input_uploaded_bytes"),
        size,
        "{counters:?}"
    );
    // Its own counter saturates at i64::MAX, and the job says so.
    assert_eq!(app("big"), Some(i64::MAX), "{counters:?}");
    assert!(
        job.counters_saturated.contains(&"app.big".to_string()),
        "the job names the saturated counter: {job}"
    );
    assert_eq!(app("minus"), Some(-maps));
    let names: Vec<&String> = counters.values().flat_map(|g| g.keys()).collect();
    assert!(
        names.iter().all(|n| n.len() <= 64),
        "no counter name past 64 bytes: {}",
        names.len()
    );

    // Every node still runs and applies: one state, and a later job runs.
    for n in &c.nodes {
        assert!(n.is_running(), "node {} still runs", n.node_id);
    }
    let o = run(shoal()
        .args([
            "submit",
            "--node",
            &c.url(0),
            "--app",
            "wordcount",
            "--wait",
            "-R",
            "1",
        ])
        .args(["--input", input.to_str().unwrap(), "--output"])
        .arg(work.join("out")));
    assert!(o.status.success(), "a later job runs: {}", text(&o));
    let got = tab_counts(&parts(&work.join("out"), 1));
    assert_eq!(
        got,
        word_counts(&text_in),
        "the later job's output is right"
    );
    let hashes = wait_for(20, "every node to apply the same state", || {
        let hs: Vec<Value> = c
            .nodes
            .iter()
            .map(|n| n.cluster().map(|v| v["state_hash"].clone()))
            .collect::<Option<_>>()?;
        hs.windows(2).all(|w| w[0] == w[1]).then_some(hs)
    });
    assert_eq!(hashes.len(), 3);
}

/// Where a node of these tests runs: as root (its tasks as a uid per job), or as the normal
/// user `nobody` in a home of its own (its tasks as itself, under Landlock).
#[derive(Clone, Copy, Debug)]
enum As {
    Root,
    NormalUser,
}

const NOBODY: (u32, u32) = (65534, 65534);

/// One node run `how`, its home kept with it. `None` (with the reason printed) where this
/// machine cannot run it: not root, or no Landlock for a normal user.
fn one_node(how: As, test: &str) -> Option<(tempfile::TempDir, NodeProc)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip(test, "needs root", "SHOAL_REQUIRE_CGROUPS");
        return None;
    }
    // A home only its owner may enter, as users' homes and `mktemp -d` are.
    let home = common::tempdir();
    let args = ["--expect", "1", "--slots", "2"].map(String::from);
    let node = match how {
        As::Root => NodeProc::start(home.path(), "n1", &args),
        As::NormalUser => {
            std::os::unix::fs::chown(home.path(), Some(NOBODY.0), Some(NOBODY.1)).unwrap();
            let launch = shoal::demo::local_cluster::Launch {
                program: Some(env!("CARGO_BIN_EXE_shoal").into()),
                user: Some(NOBODY),
                ..Default::default()
            };
            NodeProc::launch(home.path(), "n1", &args, launch).unwrap_or_else(|e| panic!("{e:#}"))
        }
    };
    wait_for(60, "the node to lead", || leader_of(&node));
    if matches!(how, As::NormalUser) {
        assert!(
            node.log_text().contains("by Landlock"),
            "a normal user's node confines its tasks: {}",
            node.log_text()
        );
    }
    Some((home, node))
}

/// `shoal submit --wait` to `node`, started: the caller waits for it.
fn submit_spawned(node: &NodeProc, args: &[&str]) -> std::process::Child {
    shoal()
        .args([
            "submit",
            "--node",
            &format!("http://{}", node.http),
            "--wait",
        ])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// What a task wrote to `marks/name`, once it has (60 s at most).
fn mark(marks: &std::path::Path, name: &str) -> String {
    wait_for(60, &format!("a task to write {name}"), || {
        std::fs::read_to_string(marks.join(name))
            .ok()
            .filter(|t| t.ends_with("end\n"))
    })
}

/// Plants, under each name the node writes for an attempt (sort runs and spills, fetched
/// map outputs), a symbolic link to `$TARGET`, a hard link to it or a FIFO — in the task's
/// own directory and in the node's half beside it — and says in `$MARKS` which took.
const PLANT: &str = r#"plant() {
  for d in . ../work; do
    for i in 0 1 2 3 4 5; do
      case $i in
        0|3) ln -s "$TARGET" "$d/$1-000$i" 2>/dev/null && echo "symlink $d/$1-000$i" ;;
        1|4) ln "$TARGET" "$d/$1-000$i" 2>/dev/null && echo "hardlink $d/$1-000$i" ;;
        *) mkfifo "$d/$1-000$i" 2>/dev/null && echo "fifo $d/$1-000$i" ;;
      esac
    done
  done >> "$MARKS/planted-$(hostname)-$$"
}
"#;

fn planting_job(work: &std::path::Path) -> (String, String) {
    let map = write_program(
        work,
        "plant-map.sh",
        &format!("#!/bin/sh\n{PLANT}plant spill\nexec awk '{{ for (i = 1; i <= NF; i++) print $i \"\\t1\" }}'\n"),
    );
    let reduce = write_program(
        work,
        "plant-reduce.sh",
        &format!(
            "#!/bin/sh\n{PLANT}plant fetched\nexec awk -F'\\t' '{{ n[$1] += $2 }} END {{ for (w in n) print w \"\\t\" n[w] }}'\n"
        ),
    );
    (map, reduce)
}

fn planted_names_are_never_written_through(how: As) {
    let test = &format!("planted_names_are_never_written_through ({how:?})");
    let Some((home, node)) = one_node(how, test) else {
        return;
    };
    let dir = common::tempdir();
    let marks = writable_by_tasks(dir.path());
    // A file of the node's that no task may write: a link planted to it must not be.
    let target = node.data.join("precious");
    std::fs::write(&target, b"the node's own\n").unwrap();
    if matches!(how, As::NormalUser) {
        std::os::unix::fs::chown(&target, Some(NOBODY.0), Some(NOBODY.1)).unwrap();
    }
    let (map, reduce) = planting_job(dir.path());
    // Enough output to spill many runs with a 1 MiB sort buffer.
    let input = dir.path().join("in.txt");
    let words: String = (0..60_000)
        .map(|i| format!("w{} v{} u{}\n", i % 97, i % 13, i))
        .collect();
    std::fs::write(&input, &words).unwrap();
    let env_target = format!("TARGET={}", target.display());
    let env_marks = format!("MARKS={}", marks.display());
    let out = dir.path().join("out");
    let child = submit_spawned(
        &node,
        &[
            "--input",
            input.to_str().unwrap(),
            "--map",
            &map,
            "--reduce",
            &reduce,
            "--sort-mb",
            "1",
            "-R",
            "2",
            "--max-attempts",
            "1",
            "--env",
            &env_target,
            "--env",
            &env_marks,
            "--output",
            out.to_str().unwrap(),
        ],
    );
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "the job succeeds: {}", text(&o));
    assert_eq!(
        std::fs::read(&target).unwrap(),
        b"the node's own\n",
        "the target is unchanged"
    );
    let mut got = tab_counts(&parts(&out, 2));
    got.sort();
    assert_eq!(got, word_counts(&words), "the output is right");
    let id = job_id(&o);
    let (_, v) = node.get(&format!("/api/v1/jobs/{id}")).unwrap();
    assert!(
        v["counters"]["shoal"]["spilled_records"]
            .as_i64()
            .unwrap_or(0)
            > 0,
        "the map spilled: {}",
        v["counters"]
    );
    // What the tasks could plant, they planted in their own directory only.
    let planted: Vec<String> = std::fs::read_dir(&marks)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("planted-"))
        .flat_map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        planted
            .iter()
            .any(|p| p.starts_with("symlink ./spill-0000")),
        "the mapper planted in its own directory: {planted:?}"
    );
    assert!(
        planted.iter().all(|p| !p.contains("../work")),
        "nothing was planted in the node's half: {planted:?}"
    );
    println!("{how:?}: planted {planted:?}; the job succeeded, the target unchanged");
    drop(node);
    drop(home);
}

#[test]
fn planted_names_are_never_written_through_as_root() {
    let _serial = one_at_a_time();
    planted_names_are_never_written_through(As::Root);
}

#[test]
fn planted_names_are_never_written_through_as_a_normal_user() {
    let _serial = one_at_a_time();
    planted_names_are_never_written_through(As::NormalUser);
}

/// Job A's mapper: says where it runs (its directory, its job's directory, its pid) in a
/// file others may read (its umask is 077, as the node's), then waits for the gate.
const WAITING_MAPPER: &str = "#!/bin/sh
printf '%s %s %s\\nend\\n' \"$PWD\" \"$SHOAL_JOB_DIR\" $$ > \"$MARKS/a-where.tmp\"
chmod 644 \"$MARKS/a-where.tmp\"
mv \"$MARKS/a-where.tmp\" \"$MARKS/a-where\"
i=0; while [ ! -e \"$MARKS/gate\" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
exec cat
";

/// Job B's mapper: told where job A runs, tries to list, read and write A's directories,
/// shipped file, job directory and logs, and to read its process; says what worked.
const PRYING_MAPPER: &str = "#!/bin/sh
i=0; while [ ! -e \"$MARKS/a-where\" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
read dir jobdir pid < \"$MARKS/a-where\" || exit 7
top=$(dirname \"$dir\"); root=$(dirname \"$top\")
try() { if eval \"$2\" >/dev/null 2>&1; then echo \"$1 WORKED\"; else echo \"$1 denied\"; fi; }
{
  try own-dir \"ls . && touch mine\"
  try list-task-dir \"ls '$dir'\"
  try read-shipped \"cat '$dir/secret.txt'\"
  try write-task-dir \"touch '$dir/planted'\"
  try list-attempt \"ls '$top'\"
  try list-node-half \"ls '$top/work'\"
  try list-scratch \"ls '$root'\"
  try list-job-dir \"ls '$jobdir'\"
  try read-job-dir \"cat '$jobdir/made.txt'\"
  try write-job-dir \"touch '$jobdir/planted'\"
  try read-logs \"ls '$DATA/blobs/$A_JOB/logs'\"
  try read-environ \"cat /proc/$pid/environ\"
  try list-cwd \"ls /proc/$pid/cwd/\"
  echo end
} > \"$MARKS/b-tried.tmp\"
mv \"$MARKS/b-tried.tmp\" \"$MARKS/b-tried\"
exec cat
";

fn jobs_are_apart(how: As) {
    let test = &format!("jobs_are_apart ({how:?})");
    let Some((home, node)) = one_node(how, test) else {
        return;
    };
    let dir = common::tempdir();
    let marks = writable_by_tasks(dir.path());
    let work = dir.path();
    let a_map = write_program(work, "a-map.sh", WAITING_MAPPER);
    let b_map = write_program(work, "b-map.sh", PRYING_MAPPER);
    let secret = write_script(work, "secret.txt", "job A's secret\n");
    let input = work.join("in.txt");
    std::fs::write(&input, "to be or not to be\n").unwrap();
    let env_marks = format!("MARKS={}", marks.display());
    let input = input.to_str().unwrap();
    let a = submit_spawned(
        &node,
        &[
            "--input",
            input,
            "--map",
            &a_map,
            "--reduce",
            "cat",
            "--file",
            &secret,
            "--setup",
            "echo made > made.txt",
            "--env",
            &env_marks,
            "--max-attempts",
            "1",
        ],
    );
    let where_a = mark(&marks, "a-where");
    let a_job = wait_for(20, "job A to be listed", || {
        let (_, v) = node.get("/api/v1/jobs").unwrap();
        v.as_array()?
            .iter()
            .find(|j| j["state"] == "running")
            .and_then(|j| j["id"].as_str().map(String::from))
    });
    let env_data = format!("DATA={}", node.data.display());
    let env_job = format!("A_JOB={a_job}");
    let b = submit_spawned(
        &node,
        &[
            "--input",
            input,
            "--map",
            &b_map,
            "--reduce",
            "cat",
            "--env",
            &env_marks,
            "--env",
            &env_data,
            "--env",
            &env_job,
            "--max-attempts",
            "1",
        ],
    );
    let tried = mark(&marks, "b-tried");
    std::fs::write(marks.join("gate"), b"").unwrap();
    for (name, child) in [("A", a), ("B", b)] {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "job {name} succeeds: {}", text(&o));
    }
    println!(
        "{how:?}: job A ran at {}B tried:\n{tried}",
        where_a.trim_end_matches("end\n")
    );
    // Its own directory it may list and write: the tries can tell.
    let worked: Vec<&str> = tried.lines().filter(|l| l.ends_with("WORKED")).collect();
    assert_eq!(
        worked,
        ["own-dir WORKED"],
        "job B reached job A's files or process"
    );
    assert_eq!(tried.lines().filter(|l| l.ends_with("denied")).count(), 12);
    drop(node);
    drop(home);
}

#[test]
fn jobs_are_apart_as_root() {
    let _serial = one_at_a_time();
    jobs_are_apart(As::Root);
}

#[test]
fn jobs_are_apart_as_a_normal_user() {
    let _serial = one_at_a_time();
    jobs_are_apart(As::NormalUser);
}

/// As root, in a directory only root may enter (as `/root` and `mktemp -d` are), `shoal
/// node` with its default flags but loopback: a job shipping a Python mapper and reducer
/// runs, and nothing on the way to the data dir was opened.
#[test]
fn a_root_node_in_a_private_directory_runs_shipped_python() {
    let _serial = one_at_a_time();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip(
            "a_root_node_in_a_private_directory_runs_shipped_python",
            "needs root",
            "SHOAL_REQUIRE_CGROUPS",
        );
        return;
    }
    let dir = common::tempdir();
    let args = ["--expect", "1"].map(String::from);
    let node = NodeProc::start_relative(dir.path(), "n1", None, &args);
    wait_for(60, "the node to lead", || leader_of(&node));
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let want = shebang_wordcount_setup(&work, 2, 300);
    let o = run(shoal()
        .current_dir(&work)
        .args(["submit", "--node", &format!("http://{}", node.http)])
        .args(shebang_job("./mapper.py", "reducer.py"))
        .args(["-R", "2", "--output", "out"]));
    assert!(o.status.success(), "the job succeeds: {}", text(&o));
    assert_eq!(check_keyed_parts(&parts(&work.join("out"), 2)), want);
    use std::os::unix::fs::PermissionsExt;
    for d in [dir.path(), node.data.as_path()] {
        let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode & 0o077,
            0,
            "{} is still its owner's alone: {mode:o}",
            d.display()
        );
    }
}
