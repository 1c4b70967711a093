//! Serving one claimed batch: walk the node's subscribers page by page, send every job's
//! notification to each page's recipients, and move the cursor only once a barrier has
//! proven that the server received the page. Then complete the jobs.
//!
//! Two pages are in flight: while the server works through page *n* (and answers its
//! barrier), page *n + 1* is read and queued, so the link is never idle waiting for a
//! round trip. If the stream drops, the barrier fails and everything after the last
//! confirmed position is sent again, together with the pages confirmed in the two seconds
//! before (a server going down may not have written them out yet): duplicates are
//! possible, loss is not; ids are stable so clients can drop the duplicates. The lease is
//! renewed alongside; if another process has taken the jobs over, the batch is abandoned.
//!
//! Fencing: a claim may be taken over as soon as the liveness session it was made under
//! is gone, or once its lease has gone unrenewed for a lease period. A fence is therefore
//! raised as soon as the session is seen lost or a renewal is overdue
//! ([`with_renewals`]), and the work checks it before each page it sends: it finishes the
//! store call or send it is in (cancelling one midway could leave a pooled connection
//! mid-protocol), sends no new page, and gives the claim back. What was already queued
//! on the connection still goes out, and whoever takes the claim over starts from the
//! saved cursor, so this costs duplicates, never a loss.

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::group::{self, Group, GroupJob, Row, Source};
use super::{backoff, deliver, Context, Link};
use crate::store::claims::{ClaimedBatch, ClaimedJob, LeaseOwner, Resource, SessionKey};
use crate::store::jobs::JobTarget;
use crate::store::StoreError;
use crate::xmpp::{BarrierError, Lane, Outbound};

/// How serving a batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Every recipient was served and the jobs are gone.
    Completed,
    /// Another owner holds the jobs now (our lease ran out).
    LeaseLost,
    /// Shutdown: progress is saved (as far as confirmed) and the lease given back.
    Stopped,
    /// The claim may be someone else's any moment (why): nothing more is sent for it.
    Fenced(&'static str),
}

/// A page handed to the connection, waiting for its receipt.
struct Sent {
    /// The last subscription of the page.
    cursor: i64,
    notifications: u64,
    /// The connection it went on.
    connection: usize,
    receipt: JoinHandle<Result<(), BarrierError>>,
}

enum Page {
    /// Sent; `full` if the page was full, so more subscribers may follow.
    Sent { sent: Sent, full: bool },
    /// No subscriptions after the position.
    Empty,
    /// Told to stop while the store was failing.
    Stopping,
    /// The outgoing queue is closed: the process is going down.
    Closed,
}

/// The lease a worker holds on a batch: who, and on which jobs.
struct Lease<'a> {
    owner: LeaseOwner,
    ids: &'a [i64],
}

/// Serves `group` (a batch, or leaves walked together), claimed by `owner`, to the end,
/// or until its lease is lost or the engine stops. `held` is when the lease was last
/// known to run for a full period from (the claim or its last renewal was sent then);
/// renewals move it.
async fn serve(
    ctx: &Context,
    owner: LeaseOwner,
    group: &Group<'_>,
    held: &mut Instant,
    stop: &watch::Receiver<bool>,
) {
    let ids = group.job_ids();
    let lease = Lease { owner, ids: &ids };
    let (fence, fenced) = watch::channel(None);
    let batch = group.first();
    let work = async {
        if batch.walks_subscribers() {
            walk(ctx, &lease, group, stop.clone(), &fenced).await
        } else {
            direct(ctx, &lease, group, stop.clone(), &fenced).await
        }
    };
    if group.members().len() > 1 {
        tracing::debug!(
            leaves = group.members().len(),
            jobs = ids.len(),
            "walking leaves below the same collections together"
        );
    }
    // One claim, one session.
    match with_renewals(ctx, &lease, batch.session, held, &fence, work).await {
        Outcome::Completed => tracing::debug!("fan-out batch done"),
        Outcome::LeaseLost => {
            tracing::warn!("fan-out lease lost: another process has taken these jobs over")
        }
        Outcome::Stopped => tracing::info!("fan-out batch interrupted by shutdown"),
        Outcome::Fenced(why) => give_up(ctx, &lease, why).await,
    }
}

/// Serves the batches of one claim. One batch is served as [`serve`] does. Of several,
/// those whose node is small enough to be sent whole (fewer subscriptions than a page)
/// go out together: one subscriber read for all of them, one barrier, one completion.
/// Small leaves below the same collections are walked together ([`group`]): the
/// collections' subscribers are read once for all of them. The first walk (of a node
/// too big to be sent whole, or of such a group) is served afterwards; any other is
/// given back at once, so that another worker can walk it meanwhile. `claimed_at` is
/// when the claim was sent (its lease runs a full period from then at least).
pub async fn serve_claim(
    ctx: &Context,
    owner: LeaseOwner,
    batches: &[ClaimedBatch],
    claimed_at: Instant,
    stop: &watch::Receiver<bool>,
) {
    let [first, ..] = batches else { return };
    let mut renewed_at = claimed_at;
    if batches.len() == 1 {
        return serve(ctx, owner, &Group::single(first), &mut renewed_at, stop).await;
    }
    let mut stop = stop.clone();
    // Read whole: fresh walks of nodes below no collection, to be sent whole (a walk
    // that was interrupted continues page by page); and leaves below collections, to
    // be walked together from their cursor (a deletion is walked alone).
    let read_whole = |b: &ClaimedBatch| {
        b.walks_subscribers()
            && if b.through_collections() {
                !b.deletes_node()
            } else {
                b.cursor == 0
            }
    };
    let asks: Vec<(i64, u32)> = batches
        .iter()
        .filter(|b| read_whole(b))
        .map(|b| (b.node_pk, ctx.settings.subscriptions_per_page(b.jobs.len())))
        .collect();
    let Some(found) = backoff::retry("read subscribers", &mut stop, || {
        ctx.store.whole_nodes(&asks)
    })
    .await
    else {
        let all: Vec<i64> = batches.iter().flat_map(|b| b.job_ids()).collect();
        release(ctx, &Lease { owner, ids: &all }).await;
        return;
    };
    let mut small: Vec<(Group, Option<Vec<Row>>)> = Vec::new();
    let mut walks = Vec::new();
    // `found` follows the batches that `read_whole` picks, in order.
    let mut found = found.into_iter();
    for b in batches {
        if !b.walks_subscribers() {
            small.push((Group::single(b), None));
            continue;
        }
        let whole = if read_whole(b) {
            found.next().flatten()
        } else {
            None
        };
        match whole {
            Some(page) if !b.through_collections() => {
                let rows = page.into_iter().map(|sub| Row::own(0, sub)).collect();
                small.push((Group::single(b), Some(rows)));
            }
            whole => walks.push((b, whole)),
        }
    }
    let mut walks = group::walks(walks).into_iter();
    let kept = walks.next();
    let given_back: Vec<i64> = walks.flat_map(|g| g.job_ids()).collect();
    if !given_back.is_empty() {
        release(
            ctx,
            &Lease {
                owner,
                ids: &given_back,
            },
        )
        .await;
        // Idle workers would otherwise find them only at the next publish or poll.
        ctx.wake_idle_workers();
    }
    if !small.is_empty() {
        // Renewed together while the small nodes go out: the walk that follows holds its
        // lease too.
        let held: Vec<i64> = small
            .iter()
            .map(|(g, _)| g)
            .chain(kept.as_ref())
            .flat_map(Group::job_ids)
            .collect();
        let lease = Lease { owner, ids: &held };
        let span = tracing::debug_span!("nodes", nodes = small.len());
        let (fence, fenced) = watch::channel(None);
        let work = tracing::Instrument::instrument(
            send_whole(ctx, owner, &small, stop.clone(), &fenced),
            span,
        );
        // One claim, one session.
        let session = first.session;
        match with_renewals(ctx, &lease, session, &mut renewed_at, &fence, work).await {
            Outcome::Completed => tracing::debug!(nodes = small.len(), "fan-out batches done"),
            Outcome::LeaseLost => {
                tracing::warn!("fan-out lease lost: another process has taken these jobs over");
                return;
            }
            Outcome::Stopped => {
                release(ctx, &lease).await;
                tracing::info!("fan-out batches interrupted by shutdown");
                return;
            }
            Outcome::Fenced(why) => {
                give_up(ctx, &lease, why).await;
                return;
            }
        }
    }
    if let Some(walk) = kept {
        serve(ctx, owner, &walk, &mut renewed_at, &stop).await;
    }
}

/// Sends the notifications of whole small nodes (and one-JID batches) behind one
/// barrier, then completes their jobs. A lost stream sends them all again.
async fn send_whole(
    ctx: &Context,
    owner: LeaseOwner,
    small: &[(Group<'_>, Option<Vec<Row>>)],
    mut stop: watch::Receiver<bool>,
    fenced: &Fenced,
) -> Outcome {
    let mut bare: Vec<String> = small
        .iter()
        .filter(|(g, _)| g.presence_based())
        .filter_map(|(_, page)| page.as_ref())
        .flatten()
        .map(|row| row.sub.bare_jid.clone())
        .collect();
    let resources = if bare.is_empty() {
        Vec::new()
    } else {
        bare.sort_unstable();
        bare.dedup();
        let Some(mut found) = backoff::retry("read presence", &mut stop, || {
            ctx.store.available_resources(&bare)
        })
        .await
        else {
            return Outcome::Stopped;
        };
        found.sort_unstable_by(|a, b| a.bare_jid.cmp(&b.bare_jid));
        found
    };
    loop {
        if let Some(why) = *fenced.borrow() {
            return Outcome::Fenced(why);
        }
        let link = ctx.next_link();
        let estimate = small
            .iter()
            .map(|(g, page)| g.jobs().len() * page.as_ref().map_or(1, Vec::len))
            .sum();
        let mut admitted = tokio::select! {
            admitted = link.pace.admit_whole(estimate) => admitted,
            _ = stop.wait_for(|stopping| *stopping) => return Outcome::Stopped,
        };
        let lane = admitted.lane();
        let mut queued = 0;
        for (group, page) in small {
            let sent = match page {
                Some(page) => {
                    queue_page(ctx, &link.out, lane, group, group.jobs(), page, &resources).await
                }
                None => queue_direct(ctx, &link.out, lane, group.first()).await,
            };
            let Some(sent) = sent else {
                return Outcome::Stopped;
            };
            queued += sent;
        }
        admitted.resize(usize::try_from(queued).unwrap_or(usize::MAX));
        let barrier = tokio::select! {
            answered = link.out.barrier_on(lane) => answered,
            why = raised(fenced) => return Outcome::Fenced(why),
        };
        match barrier {
            Ok(()) => {
                admitted.confirmed();
                metrics::counter!(crate::metrics::NOTIFICATIONS_SENT, "connection" => link.index.to_string())
                    .increment(queued);
                break;
            }
            Err(BarrierError::Closed) => return Outcome::Stopped,
            Err(e) => tracing::info!(reason = %e, "not confirmed; sending again"),
        }
    }
    // The jobs of the nodes that stay in one statement; each deleted node with its own.
    let mut keep: Vec<i64> = Vec::new();
    for (group, _) in small {
        if group.deleted_node().is_some() {
            let ids = group.job_ids();
            let outcome = complete(ctx, &Lease { owner, ids: &ids }, group, &mut stop).await;
            if outcome != Outcome::Completed {
                return outcome;
            }
        } else {
            keep.extend(group.job_ids());
        }
    }
    if keep.is_empty() {
        return Outcome::Completed;
    }
    complete_jobs(ctx, &Lease { owner, ids: &keep }, None, &mut stop).await
}

/// Whether the work on a claim must stop, and why: set by [`with_renewals`], checked
/// by the work before each page it sends.
type Fenced = watch::Receiver<Option<&'static str>>;

/// Resolves with the reason once the fence is raised (never, if its sender is gone
/// without raising it).
async fn raised(fenced: &Fenced) -> &'static str {
    let mut fenced = fenced.clone();
    match fenced.wait_for(Option::is_some).await.map(|why| *why) {
        Ok(Some(why)) => why,
        _ => std::future::pending().await,
    }
}

/// Runs `work` while renewing `lease` every third of its length, and raises `fence` as
/// soon as the claim may be taken over by someone else: the liveness `session` it was
/// made under is lost, or no renewal has succeeded for nearly a lease period since
/// `held` (which each successful renewal moves to when it was sent). The work checks
/// the fence before each page and returns [`Outcome::Fenced`]; it is not cancelled in
/// the middle of a store call or a send, which it finishes first.
async fn with_renewals(
    ctx: &Context,
    lease: &Lease<'_>,
    session: Option<SessionKey>,
    held: &mut Instant,
    fence: &watch::Sender<Option<&'static str>>,
    work: impl std::future::Future<Output = Outcome>,
) -> Outcome {
    tokio::pin!(work);
    let lost = ctx.liveness.lost(session);
    tokio::pin!(lost);
    let mut renew = tokio::time::interval(ctx.settings.renew_every());
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    renew.tick().await;
    let mut is_raised = false;
    loop {
        let overdue = *held + ctx.settings.unrenewed_limit();
        tokio::select! {
            biased;
            () = &mut lost, if !is_raised => {
                is_raised = true;
                raise(fence, "its liveness session was lost");
            }
            () = tokio::time::sleep_until(overdue), if !is_raised => {
                is_raised = true;
                raise(fence, "its lease went unrenewed for nearly a lease period");
            }
            outcome = &mut work => return outcome,
            _ = renew.tick(), if !is_raised => {
                let sent = Instant::now();
                match ctx.store.renew(lease.owner, lease.ids, ctx.settings.lease).await {
                    Ok(true) => *held = sent,
                    Ok(false) => return Outcome::LeaseLost,
                    // The database is away: keep going; a later renewal or cursor save
                    // tells whether the lease survived, and the fence above stops the
                    // work before the lease can run out unrenewed.
                    Err(e) => tracing::warn!(error = %e, "cannot renew the fan-out lease"),
                }
            }
        }
    }
}

/// Walks the group's subscribers from its cursor to the end.
async fn walk(
    ctx: &Context,
    lease: &Lease<'_>,
    group: &Group<'_>,
    mut stop: watch::Receiver<bool>,
    fenced: &Fenced,
) -> Outcome {
    let jobs = group.jobs().len();
    let largest = if group.through_collections() {
        ctx.settings.collection_subscriptions_per_page(jobs)
    } else {
        ctx.settings.subscriptions_per_page(jobs)
    };
    let mut confirmed = group.cursor();
    let mut recent = Recent::default();
    // Every stream's up/down state, to notice a reconnect that no failed barrier showed
    // (the server answered the last ping, then went down before writing that page out).
    let mut streams: Vec<_> = ctx.links.iter().map(|l| l.up.clone()).collect();
    for s in &mut streams {
        s.changed();
    }
    let mut exhausted;
    let mut pages = 0usize;
    // A confirmed position not yet saved: it is saved once the next page is queued, so
    // that the server has that page to work on while the cursor is written.
    let mut unsaved: Option<i64> = None;
    'resend: loop {
        let mut sent_to = confirmed;
        let mut in_flight: Option<Sent> = None;
        exhausted = false;
        loop {
            // Before each page: pages already queued go out, no new one does.
            if let Some(why) = *fenced.borrow() {
                return Outcome::Fenced(why);
            }
            let mut next = None;
            if !exhausted && !backoff::stopping(&stop) {
                let link = ctx.link_for_page(pages);
                pages += 1;
                let per_page = fit_groups(
                    link.pace.per_page(largest, jobs),
                    largest,
                    ctx.settings.multicast.as_deref().and_then(|m| m.limit()),
                );
                match send_page(ctx, link, group, sent_to, per_page, &mut stop).await {
                    Page::Sent { sent, full } => {
                        sent_to = sent.cursor;
                        exhausted = !full;
                        next = Some(sent);
                    }
                    Page::Empty => exhausted = true,
                    Page::Stopping => {}
                    Page::Closed => return Outcome::Stopped,
                }
            }
            // Queueing the page may have waited through a lost stream: a position
            // confirmed before it is then not saved, since the pages just before it are
            // sent again (the next receipt tells, and the walk rewinds).
            if let Some(cursor) = unsaved.take() {
                let lost = streams.iter().any(|s| s.has_changed());
                if !lost && save(ctx, lease, cursor, &mut stop).await == Some(false) {
                    return Outcome::LeaseLost;
                }
            }
            // Confirm the previous page only now, with the next one already queued.
            let to_confirm = match next {
                Some(sent) => in_flight.replace(sent),
                None => in_flight.take(),
            };
            let Some(sent) = to_confirm else {
                if in_flight.is_some() {
                    continue;
                }
                break 'resend;
            };
            // A receipt task that ended without an answer counts as a lost stream. A
            // fenced walk does not wait for it: whoever serves the claim next starts
            // from the saved cursor anyway.
            let receipt = tokio::select! {
                receipt = sent.receipt => receipt.unwrap_or(Err(BarrierError::ConnectionLost)),
                why = raised(fenced) => return Outcome::Fenced(why),
            };
            match receipt {
                Ok(()) => {
                    recent.confirmed(confirmed, std::time::Instant::now());
                    confirmed = sent.cursor;
                    metrics::counter!(crate::metrics::NOTIFICATIONS_SENT, "connection" => sent.connection.to_string())
                        .increment(sent.notifications);
                    let reconnected = streams.iter_mut().fold(false, |any, s| s.changed() | any);
                    if reconnected {
                        confirmed = recent.rewind_from(
                            confirmed,
                            "a stream was lost and reconnected during the walk",
                        );
                        if save(ctx, lease, confirmed, &mut stop).await == Some(false) {
                            return Outcome::LeaseLost;
                        }
                        continue 'resend;
                    }
                    if exhausted && in_flight.is_none() {
                        // The last page: completing the jobs follows at once, so saving
                        // the cursor first would be a write for nothing.
                        continue;
                    }
                    unsaved = Some(confirmed);
                }
                Err(BarrierError::Closed) => return Outcome::Stopped,
                Err(e) => {
                    confirmed =
                        recent.rewind_from(confirmed, &format!("a page not confirmed: {e}"));
                    // Saved at once: a crash now must not start after the pages the
                    // rewind sends again.
                    if save(ctx, lease, confirmed, &mut stop).await == Some(false) {
                        return Outcome::LeaseLost;
                    }
                    continue 'resend;
                }
            }
        }
    }
    if !exhausted {
        release(ctx, lease).await;
        return Outcome::Stopped;
    }
    complete(ctx, lease, group, &mut stop).await
}

/// Saves the walk's confirmed position `cursor` (retrying while the database is away,
/// until told to stop): `Some(false)` if the lease is lost, `None` if stopped first.
async fn save(
    ctx: &Context,
    lease: &Lease<'_>,
    cursor: i64,
    stop: &mut watch::Receiver<bool>,
) -> Option<bool> {
    backoff::retry("save the fan-out cursor", stop, || {
        ctx.store
            .save_cursor(lease.owner, lease.ids, cursor, ctx.settings.lease)
    })
    .await
}

/// A page of `per_page` subscriptions rounded up to whole multicast groups of `group`
/// recipients (at most `largest`), so that pacing does not split groups at page ends.
fn fit_groups(per_page: u32, largest: u32, group: Option<usize>) -> u32 {
    match group.and_then(|g| u32::try_from(g).ok()).filter(|g| *g > 1) {
        Some(g) if per_page < largest => per_page.div_ceil(g).saturating_mul(g).min(largest),
        _ => per_page,
    }
}

/// How long before the stream was lost a confirmed page counts as possibly undelivered.
/// A barrier's answer proves that the server routed the page, not that it wrote it out:
/// a server stopped or killed just then loses what is still in its buffers (seen with
/// Prosody's restart: one confirmed page of 25 never reached its recipient). Such pages
/// are sent again, as duplicates at worst (ids are stable).
const RESEND_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

/// The pages a walk confirmed within [`RESEND_WINDOW`] of its latest confirmation: for
/// each, when, and the position before it.
#[derive(Default)]
struct Recent(std::collections::VecDeque<(std::time::Instant, i64)>);

impl Recent {
    /// A page starting after `before` was confirmed at `at`.
    fn confirmed(&mut self, before: i64, at: std::time::Instant) {
        self.0.push_back((at, before));
        while self
            .0
            .front()
            .is_some_and(|(t, _)| at.duration_since(*t) > RESEND_WINDOW)
        {
            self.0.pop_front();
        }
    }

    /// Where to send again from after a lost stream: before the oldest page confirmed
    /// within the window (`None`: nothing confirmed yet). Forgets them, so a second loss
    /// right after does not go further back than the first.
    fn rewind(&mut self) -> Option<i64> {
        let from = self.0.front().map(|(_, before)| *before);
        self.0.clear();
        from
    }

    /// [`rewind`](Self::rewind) from the walk's `confirmed` position, logged with `why`.
    fn rewind_from(&mut self, confirmed: i64, why: &str) -> i64 {
        let from = self.rewind().unwrap_or(confirmed);
        tracing::info!(
            confirmed,
            from,
            "{why}; sending again from the pages confirmed just before"
        );
        from
    }
}

/// Reads the page after `after` and queues its notifications, and then its barrier, on
/// `link`.
async fn send_page(
    ctx: &Context,
    link: &Link,
    group: &Group<'_>,
    after: i64,
    per_page: u32,
    stop: &mut watch::Receiver<bool>,
) -> Page {
    let Some((page, more)) = backoff::retry("read subscribers", stop, || {
        subscriber_page(ctx, group, after, per_page)
    })
    .await
    else {
        return Page::Stopping;
    };
    let Some(last) = page.last().map(|row| row.sub.pk) else {
        return Page::Empty;
    };
    let resources = if group.presence_based() {
        let mut bare: Vec<String> = page.iter().map(|row| row.sub.bare_jid.clone()).collect();
        bare.sort_unstable();
        bare.dedup();
        let Some(mut found) = backoff::retry("read presence", stop, || {
            ctx.store.available_resources(&bare)
        })
        .await
        else {
            return Page::Stopping;
        };
        found.sort_unstable_by(|a, b| a.bare_jid.cmp(&b.bare_jid));
        found
    } else {
        Vec::new()
    };
    // Room on the connection (see `pace`), for what the page really holds: a full window
    // waits here, the page read meanwhile. A small node, whole in its first page, is
    // admitted beside it into the express lane. A page of many jobs goes in parts of a
    // few jobs each, every part admitted on its own, so that no part is more than half
    // the window: a page of one multicast group of 100 subscriptions and fifty jobs is
    // 5,000 notifications, and everything else on the stream would wait behind it.
    let whole = after == group.cursor() && !more;
    let per_job: Vec<usize> = group
        .jobs()
        .iter()
        .map(|gj| page.iter().filter(|row| row.gets(gj)).count())
        .collect();
    let part_size = if whole {
        usize::MAX
    } else {
        (link.pace.window() / 2).max(1)
    };
    let mut notifications = 0;
    let mut receipts = Vec::new();
    for part in job_parts(&per_job, part_size) {
        let estimate = per_job[part.clone()].iter().sum();
        let admit = async {
            if whole {
                link.pace.admit_whole(estimate).await
            } else {
                link.pace.admit(estimate).await
            }
        };
        let mut admitted = tokio::select! {
            admitted = admit => admitted,
            // Parts already queued go out and are sent again from the cursor.
            _ = stop.wait_for(|stopping| *stopping) => return Page::Stopping,
        };
        let lane = admitted.lane();
        let jobs = &group.jobs()[part];
        let Some(queued) = queue_page(ctx, &link.out, lane, group, jobs, &page, &resources).await
        else {
            return Page::Closed;
        };
        notifications += queued;
        admitted.resize(usize::try_from(queued).unwrap_or(usize::MAX));
        let out = link.out.clone();
        // Queued after every stanza of the part, so its answer is the part's receipt. It
        // runs on its own task so that the next part or page can be queued while the
        // server works; the part leaves the window when it is answered, whatever the
        // walk does meanwhile.
        receipts.push(tokio::spawn(async move {
            let answer = out.barrier_on(lane).await;
            if answer.is_ok() {
                admitted.confirmed();
            }
            answer
        }));
    }
    // The page is confirmed when every part is: a part whose group the multicast
    // service bounced fails its own barrier, not necessarily a later one.
    let receipt = tokio::spawn(async move {
        for part in receipts {
            part.await.unwrap_or(Err(BarrierError::ConnectionLost))?;
        }
        Ok(())
    });
    Page::Sent {
        sent: Sent {
            cursor: last,
            notifications,
            connection: link.index,
            receipt,
        },
        full: more,
    }
}

/// The jobs of a page in consecutive parts (ranges of job indexes) of at most `size`
/// notifications each (`per_job[i]`: job i's notifications in the page); a job bigger
/// than `size` is a part of its own. In job order, so each subscriber still gets the
/// jobs in order.
fn job_parts(per_job: &[usize], size: usize) -> Vec<std::ops::Range<usize>> {
    let mut parts = Vec::new();
    let (mut start, mut sum) = (0, 0);
    for (i, n) in per_job.iter().enumerate() {
        if i > start && sum + n > size {
            parts.push(start..i);
            (start, sum) = (i, 0);
        }
        sum += n;
    }
    if start < per_job.len() {
        parts.push(start..per_job.len());
    }
    parts
}

/// The next keyset page of the walk, and whether more may follow: the subscriptions
/// after `after` to each member's node (from memory for a leaf read whole, else at most
/// `limit` from the store) and, for leaves below collections, the collections'
/// subscriptions that may reach them (at most `limit`), merged in `pk` order (one
/// cursor for all, since subscription pks are unique across nodes) and cut at `limit`
/// notifications per job ([`group::merge`]). Collection subscribers are read only with
/// an affiliation that reads one of the leaves without more facts, and each gets the
/// leaves it reads ([`Group::through_rows`]), so the walk asks nothing per subscriber.
async fn subscriber_page(
    ctx: &Context,
    group: &Group<'_>,
    after: i64,
    limit: u32,
) -> Result<(Vec<Row>, bool), StoreError> {
    // The store's pages first: the leaves read whole are taken from memory only as far
    // as those pages reach.
    let mut sources = Vec::new();
    for (i, member) in group.members().iter().enumerate() {
        if member.whole.is_none() {
            let page = ctx
                .store
                .subscribers(member.batch.node_pk, after, limit)
                .await?;
            sources.push(Source {
                complete: page.len() < limit as usize,
                rows: page.into_iter().map(|sub| Row::own(i, sub)).collect(),
            });
        }
    }
    if let Some(ask) = group.through_ask() {
        let page = ctx
            .store
            .collection_subscribers(group.collections(), &ask.leaves, &ask.readers, after, limit)
            .await?;
        sources.push(Source {
            complete: page.subscribers.len() < limit as usize,
            rows: group.through_rows(page),
        });
    }
    let budget = (limit as usize).saturating_mul(group.jobs().len().max(1));
    let bound = group::known_up_to(&sources);
    for (i, member) in group.members().iter().enumerate() {
        if let Some(all) = &member.whole {
            sources.push(group::from_whole(i, all, after, bound, budget));
        }
    }
    Ok(group::merge(group, sources, budget))
}

/// Queues the notifications of the group's jobs for each subscription of `page` that
/// gets them and returns how many; `None` if the queue is closed. Job by job: every
/// subscription of the page gets the first job, then the second, so each subscriber
/// still sees each node's items in order, and the server's sessions take turns instead
/// of one receiving a whole batch in a row. `resources` are the available resources of
/// the page's subscribers, sorted by bare JID, for the jobs of presence-based nodes.
async fn queue_page(
    ctx: &Context,
    out: &Outbound,
    lane: Lane,
    group: &Group<'_>,
    jobs: &[GroupJob<'_>],
    page: &[Row],
    resources: &[Resource],
) -> Option<u64> {
    let available: Vec<&[Resource]> = page
        .iter()
        .map(|row| of_bare_jid(resources, &row.sub.bare_jid))
        .collect();
    // Read once per call (a page, or one part of a page of many jobs), so that a
    // subscriber's notifications of it all take the same path (the multicast service
    // and the direct route are not ordered together). A bounce between two parts of a
    // page can still put them on different paths.
    // Small deliveries go direct: through the service they would queue behind the big
    // nodes' groups it is expanding.
    let route = match lane {
        Lane::Bulk => ctx.settings.multicast.as_deref().and_then(|m| m.route()),
        Lane::Express => None,
    };
    let multicast = route.as_ref().map(|(jid, limit)| (&**jid, *limit));
    let mut queued = 0;
    // The open groups of the current job, one per collection the notification comes
    // through (`None`: the node itself), since a group shares one body and its headers.
    let mut groups: Vec<Recipients<'_>> = Vec::new();
    for gj in jobs {
        let job = gj.job;
        let presence_based = group.members()[gj.member]
            .batch
            .config
            .presence_based_delivery;
        for (row, available) in page.iter().zip(&available) {
            if !row.gets(gj) {
                continue;
            }
            let sub = &row.sub;
            let headers = deliver::Headers {
                subid: sub.shares_bare_jid.then_some(sub.subid.as_str()),
                collection: sub.via.as_deref(),
            };
            let presence = presence_based.then_some(*available);
            for to in deliver::recipients(sub, job.kind, presence) {
                queued += 1;
                match multicast {
                    // A SubID names one subscription: those go one by one.
                    Some((service, limit)) if headers.subid.is_none() => {
                        let open = match groups.iter().position(|g| g.via == headers.collection) {
                            Some(i) => i,
                            None => {
                                groups.push(Recipients {
                                    via: headers.collection,
                                    to: Vec::new(),
                                });
                                groups.len() - 1
                            }
                        };
                        groups[open].to.push(to);
                        if groups[open].to.len() >= limit
                            && !send_group(ctx, out, job, service, &mut groups[open]).await
                        {
                            return None;
                        }
                    }
                    _ => {
                        if !out
                            .send_on(lane, one_by_one(ctx, job, to, sub.pk, headers))
                            .await
                        {
                            return None;
                        }
                    }
                }
            }
        }
        // Every group of this job goes before the next job's, so each subscriber still
        // sees each node's items in order.
        if let Some((service, _)) = multicast {
            for open in &mut groups {
                if !send_group(ctx, out, job, service, open).await {
                    return None;
                }
            }
            groups.clear();
        }
    }
    Some(queued)
}

/// The recipients gathered for one multicast stanza of a job, all reached through the
/// same collection `via` (or the node itself).
struct Recipients<'a> {
    via: Option<&'a str>,
    to: Vec<&'a str>,
}

/// Queues `job`'s notification to the recipients in `group` and empties it: one stanza
/// through the multicast service `service`, even for a single recipient, so that a
/// subscription's notifications of a page all take the same path (a group's size may
/// differ between jobs: a paused subscription gets a purge but not an item). False if
/// the queue is closed.
async fn send_group(
    ctx: &Context,
    out: &Outbound,
    job: &ClaimedJob,
    service: &str,
    group: &mut Recipients<'_>,
) -> bool {
    let headers = deliver::Headers {
        subid: None,
        collection: group.via,
    };
    if group.to.is_empty() {
        return true;
    }
    metrics::counter!(crate::metrics::MULTICAST_GROUPS).increment(1);
    let stanza = deliver::multicast_message(
        &ctx.service,
        service,
        job.headline,
        &deliver::group_id(job.id, group.via),
        &job.payload_xml,
        headers,
        &group.to,
    );
    group.to.clear();
    out.send(stanza).await
}

/// `job`'s notification to `to` for subscription `pk`, addressed to it alone.
fn one_by_one(
    ctx: &Context,
    job: &ClaimedJob,
    to: &str,
    pk: i64,
    headers: deliver::Headers<'_>,
) -> String {
    let id = deliver::notification_id(job.id, pk, headers);
    deliver::message(
        &ctx.service,
        to,
        job.headline,
        &id,
        &job.payload_xml,
        headers,
    )
}

/// The resources of `bare` in `sorted` (sorted by bare JID).
fn of_bare_jid<'a>(sorted: &'a [Resource], bare: &str) -> &'a [Resource] {
    let start = sorted.partition_point(|r| r.bare_jid.as_str() < bare);
    let len = sorted[start..].partition_point(|r| r.bare_jid == bare);
    &sorted[start..start + len]
}

/// Queues the notification of each job of `batch` (jobs with one target each) and
/// returns how many; `None` if the queue is closed.
async fn queue_direct(
    ctx: &Context,
    out: &Outbound,
    lane: Lane,
    batch: &ClaimedBatch,
) -> Option<u64> {
    let mut queued = 0;
    for job in &batch.jobs {
        let JobTarget::Jid(to) = &job.target else {
            continue;
        };
        let id = deliver::group_id(job.id, None);
        let stanza = deliver::message(
            &ctx.service,
            to,
            job.headline,
            &id,
            &job.payload_xml,
            deliver::Headers::default(),
        );
        if !out.send_on(lane, stanza).await {
            return None;
        }
        queued += 1;
    }
    Some(queued)
}

/// Sends jobs that each have a single target.
async fn direct(
    ctx: &Context,
    lease: &Lease<'_>,
    group: &Group<'_>,
    mut stop: watch::Receiver<bool>,
    fenced: &Fenced,
) -> Outcome {
    let batch = group.first();
    loop {
        if let Some(why) = *fenced.borrow() {
            return Outcome::Fenced(why);
        }
        let mut admitted = tokio::select! {
            admitted = ctx.links[0].pace.admit_whole(batch.jobs.len()) => admitted,
            _ = stop.wait_for(|stopping| *stopping) => return Outcome::Stopped,
        };
        let lane = admitted.lane();
        let Some(queued) = queue_direct(ctx, &ctx.out, lane, batch).await else {
            return Outcome::Stopped;
        };
        admitted.resize(usize::try_from(queued).unwrap_or(usize::MAX));
        let barrier = tokio::select! {
            answered = ctx.out.barrier_on(lane) => answered,
            why = raised(fenced) => return Outcome::Fenced(why),
        };
        match barrier {
            Ok(()) => {
                admitted.confirmed();
                metrics::counter!(crate::metrics::NOTIFICATIONS_SENT, "connection" => ctx.links[0].index.to_string())
                    .increment(queued);
                break;
            }
            Err(BarrierError::Closed) => return Outcome::Stopped,
            Err(e) => tracing::info!(reason = %e, "not confirmed; sending again"),
        }
    }
    complete(ctx, lease, group, &mut stop).await
}

async fn complete(
    ctx: &Context,
    lease: &Lease<'_>,
    group: &Group<'_>,
    stop: &mut watch::Receiver<bool>,
) -> Outcome {
    complete_jobs(ctx, lease, group.deleted_node(), stop).await
}

/// Deletes the lease's jobs (and with `delete_node`, that node), retrying while the
/// database is away.
async fn complete_jobs(
    ctx: &Context,
    lease: &Lease<'_>,
    delete_node: Option<i64>,
    stop: &mut watch::Receiver<bool>,
) -> Outcome {
    let done = backoff::retry("complete fan-out jobs", stop, || {
        ctx.store.complete(
            lease.owner,
            lease.ids,
            delete_node.unwrap_or(0),
            delete_node.is_some(),
        )
    })
    .await;
    match done {
        Some(true) => Outcome::Completed,
        Some(false) => Outcome::LeaseLost,
        // Stopping with the database away: the jobs stay, and whoever claims them next
        // sends the last confirmed pages again.
        None => Outcome::Stopped,
    }
}

/// Raises the fence of a claim: from now on no new page goes out for it.
fn raise(fence: &watch::Sender<Option<&'static str>>, why: &'static str) {
    tracing::warn!("fan-out claim fenced, no new page for it: {why}");
    fence.send_replace(Some(why));
}

/// Stops working a fenced claim: gives the lease back, if it is still ours, so that
/// anyone (this process under its new session, too) may take it over at once.
async fn give_up(ctx: &Context, lease: &Lease<'_>, why: &str) {
    tracing::info!(
        jobs = lease.ids.len(),
        "giving a fenced fan-out claim back ({why})"
    );
    release(ctx, lease).await;
    // The process's other workers may take it over under the new session.
    ctx.wake_idle_workers();
}

async fn release(ctx: &Context, lease: &Lease<'_>) {
    if let Err(e) = ctx.store.release(lease.owner, lease.ids).await {
        tracing::warn!(error = %e, "cannot give the fan-out lease back; it will run out");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ShowValue;

    fn r(jid: &str) -> Resource {
        Resource {
            jid: jid.into(),
            bare_jid: jid.split('/').next().unwrap_or(jid).into(),
            show: ShowValue::Online,
        }
    }

    #[test]
    fn paced_pages_hold_whole_multicast_groups() {
        assert_eq!(fit_groups(32, 500, Some(100)), 100);
        assert_eq!(fit_groups(230, 500, Some(100)), 300);
        assert_eq!(
            fit_groups(480, 500, Some(100)),
            500,
            "never above the largest"
        );
        assert_eq!(fit_groups(500, 500, Some(100)), 500);
        assert_eq!(fit_groups(32, 500, None), 32, "no grouping, no rounding");
        assert_eq!(fit_groups(32, 500, Some(1)), 32);
    }

    #[test]
    fn a_page_of_many_jobs_goes_in_parts_of_at_most_half_the_window() {
        // Fifty jobs of 100 notifications in parts of 300: three jobs a part.
        let parts = job_parts(&[100; 50], 300);
        assert_eq!(parts.len(), 17);
        assert_eq!(parts[0], 0..3);
        assert_eq!(parts[16], 48..50);
        assert_eq!(
            job_parts(&[100; 3], usize::MAX),
            vec![0..3],
            "whole: one part"
        );
        assert_eq!(
            job_parts(&[500, 10, 10], 300),
            vec![0..1, 1..3],
            "a big job alone"
        );
        assert_eq!(job_parts(&[0, 0], 300), vec![0..2]);
        assert!(job_parts(&[], 300).is_empty());
    }

    #[test]
    fn a_lost_stream_sends_again_the_pages_confirmed_in_the_window_before() {
        let t0 = std::time::Instant::now();
        let secs = |s: f64| t0 + std::time::Duration::from_secs_f64(s);
        let mut recent = Recent::default();
        assert_eq!(recent.rewind(), None, "nothing confirmed yet");
        // Pages after 0, 25, 50 and 75 confirmed at 0 s, 1 s, 2.5 s and 3 s: the first
        // is more than the window before the last.
        for (before, at) in [(0, 0.0), (25, 1.0), (50, 2.5), (75, 3.0)] {
            recent.confirmed(before, secs(at));
        }
        assert_eq!(recent.rewind(), Some(25));
        assert_eq!(
            recent.rewind(),
            None,
            "a second loss does not go further back"
        );
        recent.confirmed(100, secs(60.0));
        assert_eq!(
            recent.rewind(),
            Some(100),
            "a long pause keeps the last page"
        );
    }

    #[test]
    fn resources_of_one_bare_jid_are_found_in_a_sorted_list() {
        let sorted = [r("a@x/1"), r("b@x/1"), r("b@x/2"), r("c@x/1")];
        assert_eq!(of_bare_jid(&sorted, "b@x").len(), 2);
        assert_eq!(of_bare_jid(&sorted, "a@x").len(), 1);
        assert!(of_bare_jid(&sorted, "bb@x").is_empty());
        assert!(of_bare_jid(&[], "a@x").is_empty());
    }
}
