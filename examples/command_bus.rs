//! A monitoring/command bus over pubsub: a controller publishes commands to one node
//! that every agent subscribes to; each agent runs the command and publishes its output
//! to its own node `results/<agent>`, which the controller subscribes to. Agents send
//! their presence to the controller, so it knows which are online.
//!
//! `demo` runs a controller and agents in one process against a real server (accounts
//! must exist); `agent` and `controller` run one side each.
//!
//! ```sh
//! cargo run --example command_bus -- demo --controller alice@localhost:secret \
//!     --agent bob@localhost:secret
//! ```

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use common::*;
use pubsubd_testkit::{stanza, Client, Element};

/// The commands node.
pub const COMMANDS: &str = "commands";
/// Namespace of the command and result payloads.
pub const NS_BUS: &str = "urn:example:command-bus";
/// How long the controller waits for every agent's result.
const RESULT_WAIT: Duration = Duration::from_secs(30);

/// An agent's results node.
pub fn results_node(agent_bare: &str) -> String {
    format!("results/{agent_bare}")
}

/// What the agent does with a command: here, echo it with the agent's name. A real
/// agent would run a check or an action.
fn execute(agent: &str, command: &str) -> String {
    format!("{agent} ran '{command}': ok")
}

/// Runs one agent: subscribes to the commands, tells `controller` it is online,
/// answers `commands` commands, then goes offline.
pub async fn agent(
    mut client: Client,
    service: &str,
    controller: &str,
    commands: usize,
) -> anyhow::Result<()> {
    let me = client.bare_jid().to_owned();
    let node = results_node(&me);
    ensure_node(&mut client, service, &node).await?;
    subscribe(&mut client, service, COMMANDS).await?;
    client.send(stanza::parse(&format!("<presence to='{controller}'/>")))?;
    for _ in 0..commands {
        let Some((_, payloads)) = next_event(&mut client, service, RESULT_WAIT).await else {
            break;
        };
        for cmd in payloads.iter().filter(|p| p.is("command", NS_BUS)) {
            let id = cmd.attr("id").unwrap_or("0").to_owned();
            let out = execute(&me, &cmd.text());
            let payload = format!("<result xmlns='{NS_BUS}' command='{id}'>{out}</result>");
            publish(&mut client, service, &node, &id, &payload).await?;
        }
    }
    client.send(stanza::parse(&format!(
        "<presence to='{controller}' type='unavailable'/>"
    )))?;
    Ok(())
}

/// The controller's view after one command.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Round {
    /// Agents that said they are online.
    pub online: BTreeSet<String>,
    /// Each agent's output.
    pub results: BTreeMap<String, String>,
}

/// Runs the controller: waits until `agents` are online, subscribes to their results,
/// publishes `command` and collects one result per agent.
pub async fn controller(
    client: &mut Client,
    service: &str,
    agents: &[String],
    command: &str,
) -> anyhow::Result<Round> {
    let mut round = Round::default();
    while round.online.len() < agents.len() {
        let p = client
            .wait_for(
                |s: &Element| s.name() == "presence" && s.attr("type").is_none(),
                RESULT_WAIT,
            )
            .await
            .context("agents did not come online")?;
        // Only the agents': the server also reflects the controller's own presence to
        // it, and other contacts may come online meanwhile.
        let bare = p
            .attr("from")
            .map(|from| from.split('/').next().unwrap_or(from));
        if let Some(agent) = bare.filter(|b| agents.iter().any(|a| a == b)) {
            round.online.insert(agent.to_owned());
        }
    }
    for a in agents {
        subscribe(client, service, &results_node(a)).await?;
    }
    ensure_node(client, service, COMMANDS).await?;
    publish(
        client,
        service,
        COMMANDS,
        "1",
        &format!("<command xmlns='{NS_BUS}' id='1'>{command}</command>"),
    )
    .await?;
    while round.results.len() < agents.len() {
        let (node, payloads) = next_event(client, service, RESULT_WAIT)
            .await
            .context("missing results")?;
        if let (Some(agent), Some(result)) = (node.strip_prefix("results/"), payloads.first()) {
            round.results.insert(agent.to_owned(), result.text());
        }
    }
    Ok(round)
}

/// Controller and agents in one process. The controller creates the commands node
/// first, so agents can subscribe to it.
pub async fn demo(
    server: SocketAddr,
    service: &str,
    controller_login: (&str, &str),
    agent_logins: &[(String, String)],
    command: &str,
) -> anyhow::Result<Round> {
    let mut ctl = login(server, controller_login.0, controller_login.1).await?;
    ensure_node(&mut ctl, service, COMMANDS).await?;
    let mut agents = Vec::new();
    for (jid, password) in agent_logins {
        let c = login(server, jid, password).await?;
        let service = service.to_owned();
        let controller_jid = controller_login.0.to_owned();
        agents.push(tokio::spawn(async move {
            agent(c, &service, &controller_jid, 1).await
        }));
    }
    let names: Vec<String> = agent_logins.iter().map(|(j, _)| j.clone()).collect();
    let round = controller(&mut ctl, service, &names, command).await?;
    for a in agents {
        a.await??;
    }
    Ok(round)
}

fn split_login(s: &str) -> anyhow::Result<(String, String)> {
    let (j, p) = s.split_once(':').context("logins are JID:PASSWORD")?;
    Ok((j.to_owned(), p.to_owned()))
}

const USAGE: &str = "
command_bus: a controller publishes a command to the node `commands`; every agent
online runs it and publishes its output to `results/<agent>`; the controller prints
who was online and each result.

usage: command_bus demo --controller JID:PASSWORD --agent JID:PASSWORD [--agent ...]
                        [--server HOST:PORT] [--service JID]

  --controller        the account that publishes commands (BUS_CONTROLLER)
  --agent             an account that runs them; repeat for more
  --server            the server's client port (XMPP_SERVER; default 127.0.0.1:5222)
  --service           the pubsub service (PUBSUB_SERVICE; default pubsub.localhost)
";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    help(&args, USAGE);
    finish(bus(&args).await);
}

async fn bus(args: &[String]) -> anyhow::Result<()> {
    let server: SocketAddr = arg(args, "--server", "XMPP_SERVER")
        .unwrap_or_else(|| DEFAULT_SERVER.into())
        .parse()?;
    let service =
        arg(args, "--service", "PUBSUB_SERVICE").unwrap_or_else(|| DEFAULT_SERVICE.into());
    let ctl = split_login(&required(args, "--controller", "BUS_CONTROLLER")?)?;
    let agents: Vec<(String, String)> = args
        .windows(2)
        .filter(|w| w[0] == "--agent")
        .map(|w| split_login(&w[1]))
        .collect::<anyhow::Result<_>>()?;
    if agents.is_empty() {
        anyhow::bail!("give at least one --agent JID:PASSWORD; see --help");
    }
    let round = demo(server, &service, (&ctl.0, &ctl.1), &agents, "uptime").await?;
    println!("online: {:?}", round.online);
    for (agent, out) in round.results {
        println!("{agent}: {out}");
    }
    Ok(())
}
