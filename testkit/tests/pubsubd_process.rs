//! Self-tests of `PubsubdProcess`, using a shell script as a stand-in for the
//! pubsubd binary.

use std::time::Duration;

use pubsubd_testkit::PubsubdProcess;

/// A stand-in service: logs, then exits with status 3 on SIGTERM.
const GRACEFUL: &str = "echo started; echo \"arg=$1 env=$GREETING\" >&2; \
    trap 'echo stopping; exit 3' TERM; while true; do sleep 0.05; done";

fn spawn_sh(script: &str, args: &[&str], env: &[(&str, &str)]) -> PubsubdProcess {
    let mut all = vec!["-c", script, "sh"];
    all.extend_from_slice(args);
    PubsubdProcess::spawn("/bin/sh", &all, env).expect("cannot spawn /bin/sh")
}

#[tokio::test]
async fn terminate_returns_exit_status_and_log_captures_output() -> anyhow::Result<()> {
    let mut process = spawn_sh(GRACEFUL, &["one"], &[("GREETING", "hi")]);
    process
        .wait_for_log("started", Duration::from_secs(5))
        .await?;
    assert!(process.is_running());
    let status = process.terminate().await?;
    assert_eq!(status.code(), Some(3));
    let log = process.log_contents();
    assert!(log.contains("arg=one env=hi"), "{log}");
    assert!(log.contains("stopping"), "{log}");
    Ok(())
}

#[tokio::test]
async fn kill_is_immediate() -> anyhow::Result<()> {
    let mut process = spawn_sh("trap '' TERM; sleep 30", &[], &[]);
    let status = process.kill()?;
    assert!(status.code().is_none(), "killed by a signal: {status}");
    assert!(!process.is_running());
    Ok(())
}

#[tokio::test]
async fn wait_exit_reports_running_and_exited() -> anyhow::Result<()> {
    let mut process = spawn_sh("sleep 0.3; exit 7", &[], &[]);
    assert_eq!(process.wait_exit(Duration::from_millis(10)).await?, None);
    let status = process.wait_exit(Duration::from_secs(5)).await?;
    assert_eq!(status.and_then(|s| s.code()), Some(7));
    Ok(())
}

#[tokio::test]
async fn wait_for_log_fails_when_process_exits() {
    let mut process = spawn_sh("echo bye; exit 1", &[], &[]);
    let err = process
        .wait_for_log("never", Duration::from_secs(5))
        .await
        .expect_err("the process exits first");
    assert!(
        err.to_string().contains("bye"),
        "the error shows the log: {err}"
    );
}
