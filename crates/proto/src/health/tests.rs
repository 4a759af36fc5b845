use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs `link` from `now` for `dur`, answering probes after `rtt` when
/// `answer` says so; returns the changes with their times.
fn run(
    link: &mut LinkHealth,
    now: &mut Instant,
    dur: Duration,
    rtt: Duration,
    answer: bool,
) -> Vec<(Duration, LinkChange)> {
    let start = *now;
    let end = *now + dur;
    let mut replies: VecDeque<(Instant, u32)> = VecDeque::new();
    let mut changes = Vec::new();
    while *now < end {
        link.on_data_sent(*now);
        while let Some(seq) = link.poll_probe(*now) {
            if answer {
                replies.push_back((*now + rtt, seq));
            }
        }
        while replies.front().is_some_and(|(t, _)| *t <= *now) {
            let (_, seq) = replies.pop_front().unwrap();
            if let Some(c) = link.on_reply(*now, seq) {
                changes.push((*now - start, c));
            }
        }
        if let Some(c) = link.handle_timeout(*now) {
            changes.push((*now - start, c));
        }
        *now += ms(1);
    }
    changes
}

#[test]
fn measures_rtt_and_stays_up() {
    let mut now = Instant::now();
    let mut l = LinkHealth::new(HealthConfig::default(), now);
    assert!(run(&mut l, &mut now, ms(1000), ms(3), true).is_empty());
    assert_eq!(l.status(), LinkStatus::Up);
    assert_eq!(l.srtt(), Some(ms(3)));
    assert_eq!(l.loss(), 0.0);
}

#[test]
fn cut_is_detected_within_300ms_and_heals_with_hold_down() {
    let mut now = Instant::now();
    let cfg = HealthConfig::default();
    let mut l = LinkHealth::new(cfg, now);
    run(&mut l, &mut now, ms(500), ms(1), true);
    let down = run(&mut l, &mut now, ms(1000), ms(1), false);
    assert_eq!(down.len(), 1, "{down:?}");
    assert_eq!(down[0].1, LinkChange::WentDown);
    assert!(down[0].0 <= ms(300), "detected after {:?}", down[0].0);
    assert!(l.loss() > 0.0);
    let up = run(&mut l, &mut now, ms(1000), ms(1), true);
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0].1, LinkChange::WentUp);
    assert!(up[0].0 <= ms(200), "recovered after {:?}", up[0].0);
    assert!(!l.settled(now), "inside the hold-down");
    run(&mut l, &mut now, cfg.hold_down, ms(1), true);
    assert!(l.settled(now), "after the hold-down");
}

#[test]
fn a_link_that_keeps_failing_is_held_down_longer_each_time() {
    let mut now = Instant::now();
    let cfg = HealthConfig::default();
    let mut l = LinkHealth::new(cfg, now);
    run(&mut l, &mut now, ms(500), ms(1), true);
    let mut holds = Vec::new();
    for _ in 0..7 {
        run(&mut l, &mut now, ms(400), ms(1), false);
        assert_eq!(l.status(), LinkStatus::Down);
        run(&mut l, &mut now, ms(300), ms(1), true);
        assert_eq!(l.status(), LinkStatus::Up);
        holds.push(l.hold_down().as_secs());
    }
    assert_eq!(holds, [2, 4, 8, 16, 32, 32, 32]);
    assert!(!l.settled(now + ms(31_000)));
    // A minute without failing: the next failure is an isolated one.
    run(&mut l, &mut now, ms(61_000), ms(1), true);
    assert!(l.settled(now));
    run(&mut l, &mut now, ms(400), ms(1), false);
    run(&mut l, &mut now, ms(300), ms(1), true);
    assert_eq!(l.hold_down(), cfg.hold_down);
}

#[test]
fn failures_are_counted_over_the_last_ten_minutes() {
    let mut now = Instant::now();
    let mut l = LinkHealth::new(HealthConfig::default(), now);
    run(&mut l, &mut now, ms(500), ms(1), true);
    for _ in 0..3 {
        run(&mut l, &mut now, ms(1000), ms(1), false);
        run(&mut l, &mut now, ms(1000), ms(1), true);
    }
    assert_eq!(l.failures_within_window(now), 3);
    // Ten minutes on, they are history.
    assert_eq!(l.failures_within_window(now + FLAP_WINDOW), 0);
    // At most 16 are kept, however fast it flaps.
    for _ in 0..20 {
        run(&mut l, &mut now, ms(1000), ms(1), false);
        run(&mut l, &mut now, ms(1000), ms(1), true);
    }
    assert_eq!(l.failures_within_window(now), 16);
}

#[test]
fn slow_link_is_not_declared_down() {
    // RTT above the probe interval: timeouts follow srtt.
    let mut now = Instant::now();
    let mut l = LinkHealth::new(HealthConfig::default(), now);
    let changes = run(&mut l, &mut now, ms(3000), ms(180), true);
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(l.status(), LinkStatus::Up);
}

#[test]
fn idle_links_probe_slowly_and_data_makes_them_fast() {
    let mut now = Instant::now();
    let mut l = LinkHealth::new(HealthConfig::default(), now);
    assert!(l.poll_probe(now).is_some());
    assert!(l.poll_probe(now + ms(100)).is_none(), "idle: 1 s interval");
    l.on_data_sent(now + ms(100));
    assert!(l.poll_probe(now + ms(100)).is_some(), "data makes it due");
    now += ms(150);
    assert!(l.poll_probe(now).is_some(), "active: 50 ms interval");
}

/// When each probe of an idle, answering link goes out in `dur`.
fn idle_probe_times(l: &mut LinkHealth, start: Instant, dur: Duration) -> Vec<Duration> {
    let mut times = Vec::new();
    let mut now = start;
    while now < start + dur {
        while let Some(seq) = l.poll_probe(now) {
            times.push(now - start);
            l.on_reply(now + ms(1), seq);
        }
        now += ms(1);
    }
    times
}

#[test]
fn links_that_start_in_step_drift_apart_and_never_probe_late() {
    // Sixty links that came up at the same instant (to a relay that
    // just restarted): their idle probes spread out instead of
    // staying in step, and no interval is longer than configured.
    let start = Instant::now();
    let config = HealthConfig::default();
    let last_probes: Vec<Duration> = (0..60u64)
        .map(|i| {
            let mut l = LinkHealth::new(config, start).with_salt(i.wrapping_mul(0x2545_f491));
            let times = idle_probe_times(&mut l, start, Duration::from_secs(20));
            for w in times.windows(2) {
                let gap = w[1] - w[0];
                assert!(gap <= config.idle_probe_interval + ms(1), "late: {gap:?}");
                assert!(gap >= ms(749), "shortened by more than a quarter: {gap:?}");
            }
            *times.last().unwrap()
        })
        .collect();
    // Where in its interval each link probes by the end: spread over
    // at least half of it, so a crash at any moment is seen by some
    // link well within the interval.
    let phases: Vec<u128> = last_probes.iter().map(|t| t.as_millis() % 1000).collect();
    let mut sorted = phases.clone();
    sorted.sort_unstable();
    let widest_gap = sorted
        .windows(2)
        .map(|w| w[1] - w[0])
        .chain([1000 - sorted[sorted.len() - 1] + sorted[0]])
        .max()
        .unwrap();
    assert!(widest_gap < 250, "probes still bunched: phases {phases:?}");
}

/// Counts the probes an idle (no data) link sends in `dur`, answering
/// after 1 ms when `answer`.
fn idle_probes(l: &mut LinkHealth, now: &mut Instant, dur: Duration, answer: bool) -> usize {
    let end = *now + dur;
    let mut sent = 0;
    let mut replies: VecDeque<(Instant, u32)> = VecDeque::new();
    while *now < end {
        while let Some(seq) = l.poll_probe(*now) {
            sent += 1;
            if answer {
                replies.push_back((*now + ms(1), seq));
            }
        }
        while replies.front().is_some_and(|(t, _)| *t <= *now) {
            let (_, seq) = replies.pop_front().unwrap();
            l.on_reply(*now, seq);
        }
        l.handle_timeout(*now);
        *now += ms(1);
    }
    sent
}

#[test]
fn a_local_stall_extends_probes_in_flight_and_keeps_them_out_of_the_rtt() {
    let now = Instant::now();
    let mut l = LinkHealth::new(HealthConfig::default(), now);
    l.on_data_sent(now); // probed every 50 ms
    let s1 = l.poll_probe(now).unwrap();
    l.on_reply(now + ms(10), s1);
    let t = now + ms(50);
    let s2 = l.poll_probe(t).unwrap();
    // We stalled 500 ms right after sending s2: its deadline (75 ms)
    // moves by as much, and its late reply is an answer but no RTT
    // sample.
    l.on_local_stall(t + ms(500), ms(500));
    assert_eq!(l.handle_timeout(t + ms(500)), None);
    assert_eq!(l.loss(), 0.0);
    l.on_reply(t + ms(510), s2);
    assert_eq!(l.srtt(), Some(ms(10)));
    assert_eq!(l.loss(), 0.0);
    // The stall noticed by s3's own deadline firing late: the timers
    // run before the socket is read, and the reply waiting in it
    // still counts.
    let t = t + ms(600);
    let s3 = l.poll_probe(t).unwrap();
    let fired = t + ms(75) + ms(400);
    l.on_local_stall(fired, fired - (t + ms(75)));
    assert_eq!(l.handle_timeout(fired), None);
    l.on_reply(fired, s3);
    assert_eq!(l.loss(), 0.0);
}

#[test]
fn a_dead_idle_link_backs_off_and_recovers_fast_when_it_answers() {
    let mut now = Instant::now();
    let mut l = LinkHealth::new(HealthConfig::default(), now);
    idle_probes(&mut l, &mut now, ms(3000), true);
    idle_probes(&mut l, &mut now, ms(6000), false);
    assert_eq!(l.status(), LinkStatus::Down);
    // Just after the cut: fast probing, to see it come back.
    let early = idle_probes(&mut l, &mut now, ms(2000), false);
    assert!(
        early >= 30,
        "fast while recently down: {early} probes in 2 s"
    );
    idle_probes(&mut l, &mut now, DOWN_FAST_WINDOW, false);
    let late = idle_probes(&mut l, &mut now, ms(10_000), false);
    // The idle interval, shortened by at most a quarter (the jitter).
    assert!(
        late <= 14,
        "idle rate once down long: {late} probes in 10 s"
    );
    // It answers again: the first reply brings fast probing back, so it
    // is up within a few fast intervals of the next idle probe.
    // (At most one idle interval to the next probe, then three replies
    // 50 ms apart.)
    idle_probes(&mut l, &mut now, ms(1200), true);
    assert_eq!(l.status(), LinkStatus::Up, "back up within 1.2 s");
    // A link carrying data is never backed off.
    let mut l = LinkHealth::new(HealthConfig::default(), now);
    run(&mut l, &mut now, ms(20_000), ms(1), false);
    assert_eq!(l.status(), LinkStatus::Down);
    let end = now + ms(1000);
    let mut fast = 0;
    while now < end {
        l.on_data_sent(now);
        fast += usize::from(l.poll_probe(now).is_some());
        l.handle_timeout(now);
        now += ms(1);
    }
    assert!(fast >= 15, "data keeps the fast rate: {fast} probes in 1 s");
}

#[test]
fn an_idle_link_losing_a_probe_is_checked_fast_and_stays_up_if_it_answers() {
    let mut now = Instant::now();
    let mut l = LinkHealth::new(HealthConfig::default(), now);
    idle_probes(&mut l, &mut now, ms(3000), true);
    // One idle probe lost (unanswered for 75 ms: the RTT is 1 ms), the
    // link otherwise fine: a few fast probes, then back to the idle
    // rate, never down.
    let sent = now + ms(1000);
    assert!(l.poll_probe(sent).is_some());
    assert_eq!(l.handle_timeout(sent + ms(74)), None);
    assert_eq!(l.handle_timeout(sent + ms(75)), None);
    assert!(l.suspect(), "lost after 75 ms, not after its interval");
    now = sent + ms(75);
    let fast = idle_probes(&mut l, &mut now, ms(500), true);
    assert!(
        (1..=3).contains(&fast),
        "{fast} probes in the 500 ms after a loss"
    );
    assert_eq!(l.status(), LinkStatus::Up);
    let idle = idle_probes(&mut l, &mut now, ms(3000), true);
    assert!(idle <= 4, "{idle} probes in 3 s once it answered");
    // A peer silent for 150 ms (an idle probe and the first of the
    // burst after it lost) is not called down.
    let start = now;
    let silence = l.next_deadline() - now + ms(150);
    idle_probes(&mut l, &mut now, silence, false);
    assert_eq!(l.status(), LinkStatus::Up, "down after 150 ms of silence");
    idle_probes(&mut l, &mut now, ms(3000), true);
    // A dead idle link: down within an idle interval, the first probe's
    // 75 ms and a burst of three (1.2 s at worst), not four idle
    // intervals.
    let cut = now;
    idle_probes(&mut l, &mut now, ms(1300), false);
    assert_eq!(
        l.status(),
        LinkStatus::Down,
        "down within 1.3 s of {cut:?} ({start:?})"
    );
}

#[test]
fn a_suspected_far_end_is_probed_at_once_and_judged_by_the_probe() {
    let mut now = Instant::now();
    let mut l = LinkHealth::new(HealthConfig::default(), now);
    idle_probes(&mut l, &mut now, ms(3500), true);
    // Idle, nothing in flight: the next probe is half a second away.
    assert!(l.poll_probe(now).is_none());
    l.on_far_end_suspected(now);
    let seq = l.poll_probe(now).expect("probed at once");
    // It answers: nothing changes, and the idle rate resumes.
    l.on_reply(now + ms(1), seq);
    assert_eq!(l.status(), LinkStatus::Up);
    assert!(l.poll_probe(now + ms(500)).is_none(), "idle rate again");
    // The far end is gone: down after the probe's 75 ms and one more
    // lost probe (the report and our own probes agree), where its own
    // idle probe was up to a second away.
    now += ms(10);
    l.on_far_end_suspected(now);
    idle_probes(&mut l, &mut now, ms(155), false);
    assert_eq!(l.status(), LinkStatus::Down, "down within 155 ms");
    // A probe in flight, or a link carrying data, is left alone.
    let mut l = LinkHealth::new(HealthConfig::default(), now);
    assert!(l.poll_probe(now).is_some());
    l.on_far_end_suspected(now);
    assert!(l.poll_probe(now).is_none(), "one in flight already");
}

#[test]
fn a_report_makes_two_losses_enough_only_within_its_window() {
    let mut now = Instant::now();
    let mut l = LinkHealth::new(HealthConfig::default(), now);
    idle_probes(&mut l, &mut now, ms(3500), true);
    // A fresh report and a dead far end: the probe it triggers and one
    // more lost, down ~150 ms later.
    l.on_far_end_suspected(now);
    idle_probes(&mut l, &mut now, ms(155), false);
    assert_eq!(l.status(), LinkStatus::Down, "two losses and a report");
    idle_probes(&mut l, &mut now, ms(3000), true);
    assert_eq!(l.status(), LinkStatus::Up);
    // A report a second old: two losses are not enough, four are.
    l.on_far_end_suspected(now);
    now += RUMOUR_WINDOW;
    idle_probes(&mut l, &mut now, ms(155), false);
    assert_eq!(l.status(), LinkStatus::Up, "two losses, the report too old");
    idle_probes(&mut l, &mut now, ms(20), false);
    assert_eq!(l.status(), LinkStatus::Down, "four losses");
}

#[test]
fn a_lost_probe_puts_enough_probes_in_flight_to_decide_at_once() {
    let mut now = Instant::now();
    let mut l = LinkHealth::new(HealthConfig::default(), now);
    idle_probes(&mut l, &mut now, ms(3000), true);
    // The far end dies: its next idle probe is lost after 75 ms, then
    // three more go 5 ms apart and are lost 75 ms later each: down
    // ~160 ms after the first went out (four losses, as ever).
    let first = l.next_deadline();
    now = first;
    let sent = idle_probes(&mut l, &mut now, ms(159), false);
    assert_eq!(sent, 4, "the idle probe and a burst of three");
    assert_eq!(l.status(), LinkStatus::Up, "not before the last is lost");
    idle_probes(&mut l, &mut now, ms(3), false);
    assert_eq!(l.status(), LinkStatus::Down, "down ~161 ms after the first");
}

#[test]
fn deferred_probe_moves_the_deadline_forward() {
    let now = Instant::now();
    let mut l = LinkHealth::new(HealthConfig::default(), now);
    assert!(l.next_deadline() <= now);
    l.defer_probe(now);
    assert!(l.next_deadline() > now, "no busy loop without a session");
}

#[test]
fn the_base_rtt_ignores_a_queue_and_follows_a_lasting_change() {
    let mut now = Instant::now();
    let mut link = LinkHealth::new(HealthConfig::default(), now);
    run(&mut link, &mut now, ms(3000), ms(1), true);
    assert_eq!(link.base_rtt(now), Some(ms(1)));
    // The link's own traffic queues the probes: the smoothed RTT rises,
    // the base RTT does not.
    run(&mut link, &mut now, ms(3000), ms(20), true);
    assert!(link.srtt().unwrap() > ms(15), "{:?}", link.srtt());
    assert_eq!(link.base_rtt(now), Some(ms(1)));
    // Lasting past the window, the longer path is the link's cost.
    run(&mut link, &mut now, BASE_RTT_WINDOW, ms(20), true);
    assert_eq!(link.base_rtt(now), Some(ms(20)));
    assert!(link.minima.len() <= 11, "one minimum per second kept");
}
