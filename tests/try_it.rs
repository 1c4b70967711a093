//! The README's "Try it" section, run as written: its four terminals' commands, with only
//! what a test must change (the binaries cargo already built instead of `cargo run`,
//! free ports instead of 5222 and 5347, a scratch working directory). If the README's
//! commands stop working, this fails.

use std::fs::File;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pubsubd_testkit::free_ports;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_pubsubd");
/// Generous: a loaded two-core machine starting Prosody and pubsubd.
const START: Duration = Duration::from_secs(60);
/// How long a notification may take to reach the bot.
const NOTIFY: Duration = Duration::from_secs(30);

/// The shell blocks of the README's "Try it" section, and the one-line `publish`
/// command given in its text.
struct TryIt {
    terminals: Vec<Vec<String>>,
    publish: String,
    command_bus: String,
}

fn read_try_it() -> TryIt {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README");
    let start = readme.find("\n## Try it\n").expect("a Try it section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let mut terminals = Vec::new();
    let mut block: Option<Vec<String>> = None;
    for line in section.lines() {
        match (&mut block, line.trim()) {
            (None, "```sh") => block = Some(Vec::new()),
            (Some(_), "```") => terminals.extend(block.take()),
            (Some(b), l) if !l.starts_with('#') && !l.is_empty() => b.push(l.to_string()),
            _ => {}
        }
    }
    let inline = |prefix: &str| {
        section
            .split('`')
            .find(|s| s.starts_with(prefix))
            .unwrap_or_else(|| panic!("the README shows `{prefix} …`"))
            .to_string()
    };
    TryIt {
        terminals,
        publish: inline("cargo run -- publish"),
        command_bus: inline("cargo run --example command_bus"),
    }
}

/// The README's command with what a test must change.
fn adapt(command: &str, component_port: u16) -> String {
    let examples = examples_dir();
    let mut c = command
        .replace("cargo run --release -- ", &format!("{BIN} "))
        .replace("cargo run -- ", &format!("{BIN} "))
        .replace(
            "deploy/dev/prosody.sh",
            &format!("{ROOT}/deploy/dev/prosody.sh"),
        )
        .replace(
            "examples/hello.atom",
            &format!("{ROOT}/examples/hello.atom"),
        )
        .replace("127.0.0.1:5347", &format!("127.0.0.1:{component_port}"));
    while let Some(at) = c.find("cargo run --example ") {
        let rest = &c[at + "cargo run --example ".len()..];
        let name = rest.split_whitespace().next().expect("an example name");
        let after = rest[name.len()..].trim_start();
        let after = after.strip_prefix("-- ").unwrap_or(after);
        c = format!("{}{} {after}", &c[..at], examples.join(name).display());
    }
    c
}

/// Where cargo puts the examples it builds (`cargo test` builds them all).
fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join("examples");
    assert!(
        dir.join("firehose_bot").exists(),
        "{} has no examples: run `cargo build --examples` (cargo test builds them)",
        dir.display()
    );
    dir
}

/// A command started in a process group of its own, output to a file, killed (the
/// group, by its id) when dropped.
struct Terminal {
    child: Child,
    log: PathBuf,
}

impl Terminal {
    fn start(command: &str, dir: &Path, env: &[(&str, String)], name: &str) -> Terminal {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("a log file");
        let child = Command::new("bash")
            .arg("-c")
            .arg(command)
            .current_dir(dir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("a log file"))
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("bash");
        Terminal { child, log }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `ready` holds, or fails with the terminal's output.
    fn wait(&mut self, what: &str, timeout: Duration, ready: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.output();
            if ready(&out) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{what}: the command ended ({status}) first:\n{out}");
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// Runs a command to its end in `dir`; its output, or a failure with it.
fn run(command: &str, dir: &Path, env: &[(&str, String)]) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "`{command}` failed:\n{text}");
    text
}

#[test]
fn the_readme_try_it_commands_deliver_a_notification() {
    let try_it = read_try_it();
    let [prosody, pubsubd, bot, publisher] = &try_it.terminals[..] else {
        panic!("Try it has four terminals: {:?}", try_it.terminals);
    };
    let ports = free_ports(2).expect("free ports");
    let (c2s, component) = (ports[0], ports[1]);
    let dir = std::env::temp_dir().join(format!("pubsubd-try-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    // Declared before the terminals, so dropped after them: removed even on a failure.
    let _scratch = Scratch(dir.clone());
    let env = [
        ("C2S_PORT", c2s.to_string()),
        ("COMPONENT_PORT", component.to_string()),
        ("XMPP_SERVER", format!("127.0.0.1:{c2s}")),
    ];

    // Terminal 1: the server.
    assert_eq!(prosody.len(), 1, "terminal 1 runs one command");
    let mut t1 = Terminal::start(&adapt(&prosody[0], component), &dir, &env, "prosody");
    t1.wait("Prosody listening", START, |_| {
        TcpStream::connect(("127.0.0.1", c2s)).is_ok()
    });

    // Terminal 2: pubsubd on the embedded store, in the working directory.
    assert_eq!(pubsubd.len(), 1, "terminal 2 runs one command");
    let mut t2 = Terminal::start(&adapt(&pubsubd[0], component), &dir, &env, "pubsubd");
    t2.wait("pubsubd connected", START, |out| {
        out.contains("component connected")
    });
    assert!(
        dir.join("pubsubd.sqlite3").exists(),
        "the embedded store's file"
    );

    // A bot on a node that does not exist says so in one line, with the way out.
    let mut missing = Command::new(examples_dir().join("firehose_bot"));
    missing
        .args([
            "--jid",
            "bob@localhost",
            "--password",
            "secret",
            "--node",
            "nosuch",
        ])
        .env("XMPP_SERVER", format!("127.0.0.1:{c2s}"));
    let out = missing.output().expect("firehose_bot");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(!out.status.success());
    assert!(
        last.starts_with("error: there is no node named nosuch")
            && last.contains("pubsubd node create nosuch")
            && !stderr.contains('<'),
        "{stderr}"
    );

    // Terminal 3: everything but the last command runs to its end; the bot stays.
    let (bot_run, bot_setup) = bot.split_last().expect("terminal 3 has commands");
    for command in bot_setup {
        run(&adapt(command, component), &dir, &env);
    }
    let mut t3 = Terminal::start(&adapt(bot_run, component), &dir, &env, "bot");
    t3.wait("the bot subscribed", START, |out| {
        out.contains("subscribed")
    });

    // Terminal 4: publish; the bot prints the entry's title.
    for command in publisher {
        run(&adapt(command, component), &dir, &env);
    }
    t3.wait("the notification", NOTIFY, |out| {
        out.matches("Hello from pubsubd").count() == 1
    });

    // The command-line publish from the text: a second item, a second line.
    run(&adapt(&try_it.publish, component), &dir, &env);
    t3.wait("the second notification", NOTIFY, |out| {
        out.matches("Hello from pubsubd").count() == 2
    });

    // The command bus, as the README gives it: bob answers as an agent.
    let bus = run(&adapt(&try_it.command_bus, component), &dir, &env);
    assert!(
        bus.contains("online:") && bus.contains("bob@localhost"),
        "{bus}"
    );

    drop((t3, t2, t1));
}

/// A directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_quickstart_runs_what_try_it_runs() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README");
    let quick = &readme[readme
        .find("\n## Quickstart\n")
        .expect("a Quickstart section")..];
    let run = quick
        .lines()
        .find(|l| l.starts_with("cargo run"))
        .expect("a run command");
    let try_it = read_try_it();
    assert_eq!(
        run.replace("--release ", ""),
        try_it.terminals[1][0],
        "the Quickstart's run command is the one Try it runs (tested there)"
    );
    let test = quick
        .lines()
        .find(|l| l.starts_with("cargo test"))
        .expect("a test command");
    let ci = std::fs::read_to_string(Path::new(ROOT).join(".ci/run")).expect(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == test),
        "`.ci/run` runs the README's test command `{test}`"
    );
}

#[test]
fn every_example_explains_itself_with_help() {
    for (example, flags) in [
        (
            "firehose_bot",
            &[
                "--jid",
                "--password",
                "--node",
                "--print",
                "--server",
                "--service",
            ][..],
        ),
        (
            "atom_publisher",
            &[
                "--jid",
                "--password",
                "--node",
                "FILE",
                "--server",
                "--service",
            ][..],
        ),
        (
            "command_bus",
            &["demo", "--controller", "--agent", "--server", "--service"][..],
        ),
    ] {
        let out = Command::new(examples_dir().join(example))
            .arg("--help")
            .output()
            .expect("the example runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{example} --help: {text}");
        for flag in flags {
            assert!(
                text.contains(flag),
                "{example} --help names {flag}:\n{text}"
            );
        }
    }
}
