//! The lifecycle's transitions one by one, then its invariants over random histories.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Map, json};

use super::*;
use crate::model::{Message, RUN_FORMAT, RetryPolicy, RunId, StepState};

/// A clock the tests move by hand: nothing here sleeps.
struct ManualClock(u64);

fn definition(steps: &[(&str, bool, u32)]) -> WorkflowDefinition {
    WorkflowDefinition {
        steps: steps
            .iter()
            .map(|(name, compensate, attempts)| StepDefinition {
                name: (*name).into(),
                plugin: Some("p".into()),
                compensate: *compensate,
                retry: RetryPolicy {
                    attempts: *attempts,
                    initial_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(1),
                    jitter: 0.5,
                },
                timeout: None,
                sleep: None,
                sleep_until: None,
                when: None,
                awaits: None,
                on_timeout: None,
                parallel: None,
                max_parallel: None,
                workflow: None,
                input: None,
            })
            .collect(),
        trigger: None,
        input_schema: None,
        schedule: None,
        schedule_timezone: None,
        catch_up: None,
        search: Vec::new(),
        record: false,
    }
}

/// A definition read from JSON, for steps other than plain plugin calls.
fn parsed(json: serde_json::Value) -> WorkflowDefinition {
    let definition: WorkflowDefinition = serde_json::from_value(json).unwrap();
    definition.validate().unwrap();
    definition
}

/// Journals what the machine decided (an [`Action::Record`]) and reports it.
fn journal(machine: &Lifecycle<'_>, run: &mut Run, action: &Action, now: u64) -> Vec<Action> {
    let Action::Record(entry) = action else {
        panic!("not a record: {action:?}")
    };
    machine.on(run, Event::Attempted(entry), now).unwrap()
}

#[test]
fn a_false_condition_skips_the_step_and_it_is_never_compensated() {
    let def = parsed(json!({"steps": [
        {"name": "a", "plugin": "p"},
        {"name": "gift", "plugin": "p", "when": "context.total > 100"},
        {"name": "b", "plugin": "p"},
    ]}));
    let machine = Lifecycle::new(&def);
    let clock = ManualClock(5);
    let mut run = new_run(&def, RunStatus::Running);
    run.input = json!({"total": 20}).as_object().unwrap().clone();
    let first = machine.on(&mut run, Event::Start, clock.0).unwrap();
    let actions = report(&machine, &mut run, &first[0], Outcome::Ok, &clock);
    let [Action::Record(skip)] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(
        (skip.step.as_str(), skip.outcome),
        ("gift", Outcome::Skipped)
    );
    let actions = journal(&machine, &mut run, &actions[0], clock.0);
    assert_eq!(run.step("gift").unwrap().status, StepStatus::Skipped);
    assert_eq!(actions, [exec("b", 1)]);
    let actions = report(&machine, &mut run, &actions[0], Outcome::Fatal, &clock);
    assert_eq!(
        actions,
        [Action::Save, undo("a", 1)],
        "`gift` is not undone"
    );
    // A condition that cannot be evaluated fails its step: the same would fail again.
    let mut broken = new_run(&def, RunStatus::Running);
    let first = machine.on(&mut broken, Event::Start, clock.0).unwrap();
    let actions = report(&machine, &mut broken, &first[0], Outcome::Ok, &clock);
    let [Action::Record(failed)] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(failed.outcome, Outcome::Fatal);
    assert!(
        failed.error.as_deref().unwrap().starts_with("when: "),
        "{failed:?}"
    );
}

#[test]
fn a_sleep_is_due_once_from_when_it_started_across_a_restart() {
    let def = parsed(json!({"steps": [
        {"name": "a", "plugin": "p"},
        {"name": "nap", "sleep": "10m"},
        {"name": "b", "plugin": "p"},
    ]}));
    let machine = Lifecycle::new(&def);
    let mut clock = ManualClock(1_000);
    let mut run = new_run(&def, RunStatus::Running);
    let first = machine.on(&mut run, Event::Start, clock.0).unwrap();
    let actions = report(&machine, &mut run, &first[0], Outcome::Ok, &clock);
    let [Action::Record(started)] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(started.outcome, Outcome::Started);
    let due = 1_000 + 600_000;
    assert_eq!(started.due_ms, Some(due));
    let actions = journal(&machine, &mut run, &actions[0], clock.0);
    assert_eq!(actions, [Action::Wait { until_ms: due }]);
    assert_eq!(run.step("nap").unwrap().status, StepStatus::Waiting);
    // A restart later waits only for what is left, from the journal's due time.
    clock.0 = 200_000;
    let mut recovered = run.clone();
    assert_eq!(
        machine
            .on(&mut recovered, Event::Recovered, clock.0)
            .unwrap(),
        [Action::Wait { until_ms: due }]
    );
    clock.0 = due;
    let actions = machine.on(&mut run, Event::TimerFired, clock.0).unwrap();
    let [Action::Record(woke)] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(woke.outcome, Outcome::Ok);
    let actions = journal(&machine, &mut run, &actions[0], clock.0);
    assert_eq!(actions, [exec("b", 1)]);
    assert_eq!(run.step("nap").unwrap().status, StepStatus::Completed);
    // A failure after it compensates `a` only: a sleep has nothing to undo.
    let actions = report(&machine, &mut run, &actions[0], Outcome::Fatal, &clock);
    assert_eq!(actions, [Action::Save, undo("a", 1)]);
}

#[test]
fn sleep_until_reads_its_time_from_the_context() {
    let def = parsed(json!({"steps": [
        {"name": "wait", "sleep-until": "context.at"},
    ]}));
    let machine = Lifecycle::new(&def);
    let mut run = new_run(&def, RunStatus::Running);
    run.input = json!({"at": "1970-01-01T00:00:05Z"})
        .as_object()
        .unwrap()
        .clone();
    let actions = machine.on(&mut run, Event::Start, 1_000).unwrap();
    let [Action::Record(started)] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(started.due_ms, Some(5_000));
    // A time already past wakes it at once.
    let actions = journal(&machine, &mut run, &actions[0], 6_000);
    assert!(matches!(&actions[..], [Action::Record(e)] if e.outcome == Outcome::Ok));
    let mut bad = new_run(&def, RunStatus::Running);
    bad.input = json!({"at": "soon"}).as_object().unwrap().clone();
    let actions = machine.on(&mut bad, Event::Start, 1_000).unwrap();
    assert!(
        matches!(&actions[..], [Action::Record(e)] if e.outcome == Outcome::Fatal),
        "{actions:?}"
    );
}

#[test]
fn an_await_parks_takes_the_first_matching_message_once_or_times_out() {
    let def = parsed(json!({"steps": [
        {"name": "settle", "await": {"topic": "paid", "match": "event.data.order == context.order", "timeout": "1m"}},
    ]}));
    let machine = Lifecycle::new(&def);
    let mut run = new_run(&def, RunStatus::Running);
    run.input = json!({"order": "o-1"}).as_object().unwrap().clone();
    let actions = machine.on(&mut run, Event::Start, 0).unwrap();
    assert!(matches!(&actions[..], [Action::Record(e)] if e.due_ms == Some(60_000)));
    assert_eq!(
        journal(&machine, &mut run, &actions[0], 0),
        [Action::Wait { until_ms: 60_000 }]
    );
    let message = |id: &str, order: &str| Message {
        id: id.into(),
        kind: crate::model::MessageKind::Event {
            id: id.into(),
            topic: "paid".into(),
            source: "s".into(),
            time_ms: 0,
        },
        data: json!({"order": order, "amount": 5}),
        received_ms: 10,
    };
    // One for the order that came before the step began (at 5): not its, without `buffer`.
    run.step_mut("settle").unwrap().started_ms = Some(5);
    let mut early = message("m0", "o-1");
    early.received_ms = 1;
    let inbox = [
        early,
        message("m1", "o-2"),
        message("m2", "o-1"),
        message("m3", "o-1"),
    ];
    let (taken, entry) = machine.take(&run, &inbox, 20).unwrap();
    assert_eq!(
        taken.id, "m2",
        "the first that matches and came after the step began"
    );
    assert_eq!(entry.message.as_deref(), Some("m2"));
    assert_eq!(
        machine.on(&mut run, Event::Attempted(&entry), 20).unwrap(),
        [Action::Finish(RunStatus::Completed)]
    );
    assert_eq!(run.context()["amount"], 5);
    // Timed out, a step fails unless it says to go on.
    let mut late = new_run(&def, RunStatus::Running);
    let actions = machine.on(&mut late, Event::Start, 0).unwrap();
    journal(&machine, &mut late, &actions[0], 0);
    let actions = machine.on(&mut late, Event::TimerFired, 60_000).unwrap();
    let [Action::Record(timeout)] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(timeout.outcome, Outcome::Fatal);
    assert!(
        timeout
            .error
            .as_deref()
            .unwrap()
            .contains("timed out waiting for an event on `paid`")
    );
    let forever = parsed(json!({"steps": [{"name": "s", "await": {"signal": "go"}}]}));
    let machine = Lifecycle::new(&forever);
    let mut run = new_run(&forever, RunStatus::Running);
    let actions = machine.on(&mut run, Event::Start, 0).unwrap();
    assert_eq!(journal(&machine, &mut run, &actions[0], 0), [Action::Park]);
}

#[test]
fn a_cancel_while_asleep_compensates_at_once_and_ends_cancelled() {
    let def = parsed(json!({"steps": [
        {"name": "a", "plugin": "p"},
        {"name": "nap", "sleep": "1h"},
    ]}));
    let machine = Lifecycle::new(&def);
    let clock = ManualClock(0);
    let mut run = new_run(&def, RunStatus::Running);
    let first = machine.on(&mut run, Event::Start, clock.0).unwrap();
    let actions = report(&machine, &mut run, &first[0], Outcome::Ok, &clock);
    journal(&machine, &mut run, &actions[0], clock.0);
    let actions = machine.on(&mut run, Event::Cancel, 10).unwrap();
    assert_eq!(actions, [Action::Save, undo("a", 1)]);
    assert_eq!(run.step("nap").unwrap().status, StepStatus::Cancelled);
    // The sleep's timer fires later: nothing executes, the undo goes on.
    assert_eq!(
        machine.on(&mut run, Event::TimerFired, 20).unwrap(),
        [undo("a", 1)]
    );
    let actions = report(&machine, &mut run, &undo("a", 1), Outcome::Ok, &clock);
    assert_eq!(actions, [Action::Finish(RunStatus::Cancelled)]);
}

fn new_run(definition: &WorkflowDefinition, status: RunStatus) -> Run {
    Run {
        format: RUN_FORMAT,
        id: RunId::parse("run-1").unwrap(),
        workflow: "w".into(),
        workflow_version: Some(definition.digest()),
        status,
        input: Map::new(),
        steps: definition
            .all_steps()
            .map(|(s, branch)| {
                StepState::pending(&s.name).in_branch(branch.map(|b| b.name.as_str()))
            })
            .collect(),
        error: None,
        plugins: BTreeMap::new(),
        idempotency_key: None,
        parent: None,
        traceparent: None,
        search: Default::default(),
        cancelled: false,
        closed: false,
        created_ms: 0,
        updated_ms: 0,
        ended_ms: None,
        journaled: 0,
        revision: 0,
        epoch: 0,
    }
}

fn attempt(step: &str, direction: Direction, attempt: u32) -> Action {
    Action::Attempt(Attempt {
        step: step.into(),
        direction,
        attempt,
        branch: None,
    })
}

fn exec(step: &str, n: u32) -> Action {
    attempt(step, Direction::Execute, n)
}

fn undo(step: &str, n: u32) -> Action {
    attempt(step, Direction::Compensate, n)
}

/// Reports `action` (an attempt) as ended at `clock` with `outcome`.
fn report(
    machine: &Lifecycle<'_>,
    run: &mut Run,
    action: &Action,
    outcome: Outcome,
    clock: &ManualClock,
) -> Vec<Action> {
    let Action::Attempt(a) = action else {
        panic!("not an attempt: {action:?}")
    };
    let output = (outcome == Outcome::Ok).then(|| json!({ a.step.clone(): a.attempt }));
    let entry = entry(
        a,
        outcome,
        (outcome != Outcome::Ok).then(|| format!("{} failed", a.step)),
        output.and_then(|v| v.as_object().cloned()),
        (clock.0, clock.0),
    );
    machine
        .on(run, Event::Attempted(&entry), clock.0)
        .expect("the run takes the outcome")
}

/// Marks the attempts among `actions` in flight, as the engine does when it makes them.
fn fly(run: &mut Run, actions: &[Action]) {
    for action in actions {
        if let Action::Attempt(a) = action {
            run.step_mut(&a.step).unwrap().in_flight = true;
        }
    }
}

fn in_branch(action: Action, branch: &str) -> Action {
    match action {
        Action::Attempt(mut a) => {
            a.branch = Some(branch.into());
            Action::Attempt(a)
        }
        other => other,
    }
}

fn forked(max_parallel: Option<u32>) -> WorkflowDefinition {
    let step = |name: &str| json!({ "name": name, "plugin": "p", "retry": { "attempts": 1 } });
    let mut parallel = json!({
        "name": "fan_out",
        "parallel": [
            { "name": "x", "steps": [step("x1"), step("x2")] },
            [step("y1")],
        ],
    });
    if let Some(max) = max_parallel {
        parallel["max-parallel"] = json!(max);
    }
    parsed(json!({ "steps": [step("a"), parallel, step("c")] }))
}

/// A run of `definition` (from [`forked`]) past `a` and the fork, with the first attempts
/// of both branches in flight.
fn forked_run(
    machine: &Lifecycle<'_>,
    definition: &WorkflowDefinition,
    clock: &ManualClock,
) -> (Run, Vec<Action>) {
    let mut run = new_run(definition, RunStatus::Pending);
    let start = machine.on(&mut run, Event::Start, 0).unwrap();
    assert_eq!(start, vec![Action::Save, exec("a", 1)]);
    let fork = report(machine, &mut run, &start[1], Outcome::Ok, clock);
    let both = journal(machine, &mut run, &fork[0], 0);
    assert_eq!(
        both,
        vec![
            in_branch(exec("x1", 1), "x"),
            in_branch(exec("y1", 1), "y1")
        ]
    );
    fly(&mut run, &both);
    (run, both)
}

#[test]
fn branches_run_at_once_each_from_the_fork_and_merge_under_their_names() {
    let definition = forked(None);
    let machine = Lifecycle::new(&definition);
    let clock = ManualClock(0);
    let (mut run, both) = forked_run(&machine, &definition, &clock);
    // x1 ends: x goes on while y1 is still in flight.
    let x2 = report(&machine, &mut run, &both[0], Outcome::Ok, &clock);
    assert_eq!(x2, vec![in_branch(exec("x2", 1), "x")]);
    let context = context_for(&run, &definition, "x2", Direction::Execute);
    assert_eq!(
        (context.get("a"), context.get("x1")),
        (Some(&json!(1)), Some(&json!(1)))
    );
    fly(&mut run, &x2);
    assert_eq!(
        report(&machine, &mut run, &both[1], Outcome::Ok, &clock),
        vec![]
    );
    let joined = report(&machine, &mut run, &x2[0], Outcome::Ok, &clock);
    let c = journal(&machine, &mut run, &joined[0], 0);
    assert_eq!(c, vec![exec("c", 1)]);
    let context = context_for(&run, &definition, "c", Direction::Execute);
    assert_eq!(context["x"], json!({ "x1": 1, "x2": 1 }));
    assert_eq!(context["y1"], json!({ "y1": 1 }));
    assert!(
        !context.contains_key("x1"),
        "a branch's output stays under its name"
    );
    let done = report(&machine, &mut run, &c[0], Outcome::Ok, &clock);
    assert_eq!(done, vec![Action::Finish(RunStatus::Completed)]);
    assert_eq!(run.context()["x"], json!({ "x1": 1, "x2": 1 }));
}

#[test]
fn a_failed_branch_stops_the_others_and_every_branch_is_undone_in_reverse() {
    let definition = forked(None);
    let machine = Lifecycle::new(&definition);
    let clock = ManualClock(0);
    let (mut run, both) = forked_run(&machine, &definition, &clock);
    let x2 = report(&machine, &mut run, &both[0], Outcome::Ok, &clock);
    fly(&mut run, &x2);
    // y1 fails for good while x2 is in flight: nothing new starts, nothing is undone yet.
    assert_eq!(
        report(&machine, &mut run, &both[1], Outcome::Fatal, &clock),
        vec![]
    );
    assert_eq!(run.status, RunStatus::Running);
    // Killed now, the restart makes x2 again before it compensates: it may have been made.
    let mut restarted = run.clone();
    restarted.step_mut("x2").unwrap().in_flight = false;
    let again = machine.on(&mut restarted, Event::Recovered, 0).unwrap();
    assert_eq!(again, x2);
    // x2 completes, and is undone with the rest.
    let undo_x2 = report(&machine, &mut run, &x2[0], Outcome::Ok, &clock);
    assert_eq!(undo_x2, vec![Action::Save, in_branch(undo("x2", 1), "x")]);
    assert_eq!(run.status, RunStatus::Compensating);
    assert_eq!(run.step("fan_out").unwrap().status, StepStatus::Failed);
    assert_eq!(run.error.as_ref().unwrap().step, "y1");
    let undo_x1 = report(&machine, &mut run, &undo_x2[1], Outcome::Ok, &clock);
    assert_eq!(undo_x1, vec![in_branch(undo("x1", 1), "x")]);
    let undo_a = report(&machine, &mut run, &undo_x1[0], Outcome::Ok, &clock);
    assert_eq!(undo_a, vec![undo("a", 1)]);
    let end = report(&machine, &mut run, &undo_a[0], Outcome::Ok, &clock);
    assert_eq!(end, vec![Action::Finish(RunStatus::Compensated)]);
    assert_eq!(run.step("y1").unwrap().status, StepStatus::Failed);
}

#[test]
fn max_parallel_opens_a_branch_when_another_ends_and_a_restart_goes_on() {
    let definition = forked(Some(1));
    let machine = Lifecycle::new(&definition);
    let clock = ManualClock(0);
    let mut run = new_run(&definition, RunStatus::Pending);
    let start = machine.on(&mut run, Event::Start, 0).unwrap();
    let fork = report(&machine, &mut run, &start[1], Outcome::Ok, &clock);
    let x1 = journal(&machine, &mut run, &fork[0], 0);
    assert_eq!(x1, vec![in_branch(exec("x1", 1), "x")]);
    fly(&mut run, &x1);
    let x2 = report(&machine, &mut run, &x1[0], Outcome::Ok, &clock);
    assert_eq!(x2, vec![in_branch(exec("x2", 1), "x")]);
    fly(&mut run, &x2);
    // A crash while x2 is in flight: the restart makes it again, and y waits its turn.
    let mut restarted = run.clone();
    restarted.step_mut("x2").unwrap().in_flight = false;
    let again = machine.on(&mut restarted, Event::Recovered, 0).unwrap();
    assert_eq!(again, x2);
    let y1 = report(&machine, &mut run, &x2[0], Outcome::Ok, &clock);
    assert_eq!(y1, vec![in_branch(exec("y1", 1), "y1")]);
}

#[test]
fn a_cancel_during_branches_lets_the_attempts_in_flight_end_then_undoes_them() {
    let definition = forked(None);
    let machine = Lifecycle::new(&definition);
    let clock = ManualClock(0);
    let (mut run, both) = forked_run(&machine, &definition, &clock);
    assert_eq!(
        machine.on(&mut run, Event::Cancel, 0).unwrap(),
        vec![Action::Save]
    );
    assert_eq!(
        report(&machine, &mut run, &both[0], Outcome::Ok, &clock),
        vec![]
    );
    // Killed now, the run is still running, cancelled: the restart makes the attempts that
    // were in flight again, so that what they did is undone too.
    let mut restarted = run.clone();
    restarted.step_mut("y1").unwrap().in_flight = false;
    assert_eq!(restarted.status, RunStatus::Running);
    // Which were in flight is not known, so x2, which the cancel kept from starting, is
    // made (and then undone) too.
    let again = machine.on(&mut restarted, Event::Recovered, 0).unwrap();
    assert_eq!(again, vec![in_branch(exec("x2", 1), "x"), both[1].clone()]);
    let undo_x1 = report(&machine, &mut run, &both[1], Outcome::Ok, &clock);
    assert_eq!(
        undo_x1,
        vec![
            Action::Save,
            in_branch(undo("x1", 1), "x"),
            in_branch(undo("y1", 1), "y1")
        ]
    );
}

#[test]
fn a_child_step_parks_ends_with_its_child_and_is_undone_or_cancelled_with_it() {
    let definition = parsed(json!({ "steps": [
        { "name": "ship", "workflow": "shipping", "input": "{'order': context.order}" },
        { "name": "b", "plugin": "p", "retry": { "attempts": 1 } },
    ]}));
    let machine = Lifecycle::new(&definition);
    let clock = ManualClock(0);
    let mut run = new_run(&definition, RunStatus::Pending);
    run.input = json!({ "order": "o-1", "other": 1 })
        .as_object()
        .unwrap()
        .clone();
    let start = machine.on(&mut run, Event::Start, 0).unwrap();
    let Action::Record(started) = &start[1] else {
        panic!("{start:?}")
    };
    assert_eq!(started.child.as_deref(), Some("run-1.ship"));
    assert_eq!(
        journal(&machine, &mut run, &start[1], 0),
        vec![Action::Park]
    );
    let ship = definition.step("ship").unwrap();
    assert_eq!(
        machine.child_waiting(&run).map(|s| &s.name),
        Some(&ship.name)
    );
    assert_eq!(
        Value::Object(machine.child_input(&run, ship).unwrap()),
        json!({ "order": "o-1" })
    );
    // A child still running ends nothing; a completed one ends the step with its output.
    let mut child = new_run(
        &parsed(json!({ "steps": [{ "name": "c", "plugin": "p" }] })),
        RunStatus::Running,
    );
    assert_eq!(machine.child_ended(ship, &child, 5), None);
    child.status = RunStatus::Completed;
    child.steps[0].output = json!({ "tracking": "t-1" }).as_object().cloned();
    let ended = machine.child_ended(ship, &child, 5).unwrap();
    let b = machine.on(&mut run, Event::Attempted(&ended), 5).unwrap();
    assert_eq!(b, vec![exec("b", 1)]);
    assert_eq!(run.context()["ship"], json!({ "tracking": "t-1" }));
    // b fails for good: the child's undo is asked, journaled, and waited for, parked.
    let undo_ship = report(&machine, &mut run, &b[0], Outcome::Fatal, &clock);
    let [Action::Save, Action::Record(asked)] = &undo_ship[..] else {
        panic!("{undo_ship:?}")
    };
    assert_eq!(
        (asked.direction, asked.outcome),
        (Direction::Compensate, Outcome::Started)
    );
    assert_eq!(
        journal(&machine, &mut run, &undo_ship[1], 6),
        vec![Action::Park]
    );
    assert_eq!(
        machine.child_undoing(&run).map(|(s, at)| (&s.name, at)),
        Some((&ship.name, 0))
    );
    let undone = machine.child_undone(&run, ship, None, 7);
    let end = machine.on(&mut run, Event::Attempted(&undone), 7).unwrap();
    assert_eq!(end, vec![Action::Finish(RunStatus::Compensated)]);
    assert_eq!(run.step("ship").unwrap().status, StepStatus::Compensated);

    // A cancel while the child runs cancels the child (an undo of the step).
    let mut run = new_run(&definition, RunStatus::Pending);
    let start = machine.on(&mut run, Event::Start, 0).unwrap();
    journal(&machine, &mut run, &start[1], 0);
    let cancel = machine.on(&mut run, Event::Cancel, 1).unwrap();
    assert!(
        matches!(&cancel[..], [Action::Save, Action::Record(e)] if e.direction == Direction::Compensate),
        "{cancel:?}"
    );
    // A failed child fails the step.
    child.status = RunStatus::Compensated;
    let failed = machine.child_ended(ship, &child, 5).unwrap();
    assert_eq!(failed.outcome, Outcome::Fatal);
    assert!(failed.error.unwrap().contains("ended compensated"));
}

#[test]
fn an_undo_compensates_a_completed_run_and_nothing_else() {
    let definition = definition(&[("a", true, 1), ("b", false, 1)]);
    let machine = Lifecycle::new(&definition);
    let clock = ManualClock(0);
    let mut run = new_run(&definition, RunStatus::Running);
    assert_eq!(
        machine.on(&mut run, Event::Undo, 0),
        Err(Refused::Ended(RunStatus::Running))
    );
    let a = machine.on(&mut run, Event::Start, 0).unwrap();
    let b = report(&machine, &mut run, &a[0], Outcome::Ok, &clock);
    let done = report(&machine, &mut run, &b[0], Outcome::Ok, &clock);
    assert_eq!(done, vec![Action::Finish(RunStatus::Completed)]);
    let undo_a = machine.on(&mut run, Event::Undo, 1).unwrap();
    assert_eq!(undo_a, vec![Action::Save, undo("a", 1)]);
    let end = report(&machine, &mut run, &undo_a[1], Outcome::Ok, &clock);
    assert_eq!(end, vec![Action::Finish(RunStatus::Compensated)]);
}

#[test]
fn a_new_run_executes_its_steps_in_order_and_completes() {
    let def = definition(&[("a", true, 3), ("b", true, 3)]);
    let machine = Lifecycle::new(&def);
    let clock = ManualClock(1000);
    let mut run = new_run(&def, RunStatus::Pending);
    let actions = machine.on(&mut run, Event::Start, clock.0).unwrap();
    assert_eq!(
        actions,
        [Action::Save, exec("a", 1)],
        "pending becomes running"
    );
    assert_eq!(run.status, RunStatus::Running);
    let actions = report(&machine, &mut run, &actions[1], Outcome::Ok, &clock);
    assert_eq!(actions, [exec("b", 1)], "no save while the status stays");
    let actions = report(&machine, &mut run, &actions[0], Outcome::Ok, &clock);
    assert_eq!(actions, [Action::Finish(RunStatus::Completed)]);
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.ended_ms, Some(1000));
    assert_eq!(run.context()["b"], 1);
    assert!(!machine.retryable(&run));
}

#[test]
fn a_failed_attempt_waits_out_its_backoff_from_when_it_ended() {
    let def = definition(&[("a", true, 3)]);
    let machine = Lifecycle::new(&def);
    let mut clock = ManualClock(1000);
    let mut run = new_run(&def, RunStatus::Running);
    let first = machine.on(&mut run, Event::Start, clock.0).unwrap();
    let actions = report(&machine, &mut run, &first[0], Outcome::Retryable, &clock);
    let [Action::Wait { until_ms }] = actions[..] else {
        panic!("{actions:?}")
    };
    // 100 ms with up to half of it jittered away.
    assert!((1050..=1100).contains(&until_ms), "{until_ms}");
    clock.0 = until_ms - 1;
    assert_eq!(
        machine.on(&mut run, Event::TimerFired, clock.0).unwrap(),
        [Action::Wait { until_ms }],
        "early: the same due time again"
    );
    // A crash while waiting: the restart waits only for what is left.
    let mut recovered = run.clone();
    assert_eq!(
        machine
            .on(&mut recovered, Event::Recovered, clock.0)
            .unwrap(),
        [Action::Wait { until_ms }]
    );
    clock.0 = until_ms;
    assert_eq!(
        machine.on(&mut run, Event::TimerFired, clock.0).unwrap(),
        [exec("a", 2)]
    );
    // The second retry waits about twice as long, from the second attempt's end.
    let actions = report(&machine, &mut run, &exec("a", 2), Outcome::Host, &clock);
    let [Action::Wait { until_ms: second }] = actions[..] else {
        panic!("{actions:?}")
    };
    assert!(
        (clock.0 + 100..=clock.0 + 200).contains(&second),
        "{second}"
    );
}

#[test]
fn jitter_is_the_same_for_an_attempt_and_differs_between_runs() {
    let def = definition(&[("a", true, 3)]);
    let machine = Lifecycle::new(&def);
    let clock = ManualClock(0);
    let mut dues = Vec::new();
    for i in 0..20 {
        let mut run = new_run(&def, RunStatus::Running);
        run.id = RunId::parse(&format!("run-{i}")).unwrap();
        report(
            &machine,
            &mut run,
            &exec("a", 1),
            Outcome::Retryable,
            &clock,
        );
        let again = machine.on(&mut run.clone(), Event::Recovered, 0).unwrap();
        let first = machine.on(&mut run, Event::Recovered, 0).unwrap();
        assert_eq!(again, first);
        dues.push(first);
    }
    dues.sort_by_key(|a| format!("{a:?}"));
    dues.dedup();
    assert!(dues.len() > 10, "spread: {dues:?}");
}

#[test]
fn out_of_attempts_the_completed_steps_are_undone_last_first() {
    let def = definition(&[
        ("a", true, 1),
        ("skip", false, 1),
        ("b", true, 1),
        ("c", true, 2),
    ]);
    let machine = Lifecycle::new(&def);
    let clock = ManualClock(10);
    let mut run = new_run(&def, RunStatus::Running);
    let mut next = machine.on(&mut run, Event::Start, clock.0).unwrap();
    for step in ["a", "skip", "b"] {
        assert_eq!(next, [exec(step, 1)]);
        next = report(&machine, &mut run, &next[0], Outcome::Ok, &clock);
    }
    assert_eq!(next, [exec("c", 1)]);
    let _wait = report(&machine, &mut run, &next[0], Outcome::Retryable, &clock);
    let next = report(&machine, &mut run, &exec("c", 2), Outcome::Host, &clock);
    assert_eq!(next, [Action::Save, undo("b", 1)], "c failed for good");
    assert_eq!(run.status, RunStatus::Compensating);
    assert_eq!(run.step("c").unwrap().status, StepStatus::Failed);
    assert_eq!(run.error.as_ref().unwrap().step, "c");
    let next = report(&machine, &mut run, &next[1], Outcome::Ok, &clock);
    assert_eq!(next, [undo("a", 1)], "`skip` does not compensate");
    let next = report(&machine, &mut run, &next[0], Outcome::Ok, &clock);
    assert_eq!(next, [Action::Finish(RunStatus::Compensated)]);
    assert_eq!(run.error.as_ref().unwrap().step, "c", "the cause stays");
    assert!(!machine.retryable(&run));
}

#[test]
fn a_fatal_failure_with_nothing_to_undo_fails_the_run() {
    let def = definition(&[("a", false, 3), ("b", true, 3)]);
    let machine = Lifecycle::new(&def);
    let clock = ManualClock(10);
    let mut run = new_run(&def, RunStatus::Running);
    let next = report(&machine, &mut run, &exec("a", 1), Outcome::Ok, &clock);
    let next = report(&machine, &mut run, &next[0], Outcome::Fatal, &clock);
    assert_eq!(next, [Action::Finish(RunStatus::Failed)]);
    assert_eq!(run.error.as_ref().unwrap().step, "b");
    assert_eq!(
        machine.on(&mut run, Event::Retry, clock.0),
        Err(Refused::NotRetryable(RunStatus::Failed))
    );
}

#[test]
fn a_compensation_that_keeps_failing_stops_until_a_retry_grants_a_new_round() {
    let def = definition(&[("a", true, 2), ("b", true, 1)]);
    let machine = Lifecycle::new(&def);
    let mut clock = ManualClock(10);
    let mut run = new_run(&def, RunStatus::Running);
    report(&machine, &mut run, &exec("a", 1), Outcome::Ok, &clock);
    let next = report(&machine, &mut run, &exec("b", 1), Outcome::Fatal, &clock);
    assert_eq!(next, [Action::Save, undo("a", 1)]);
    let wait = report(&machine, &mut run, &next[1], Outcome::Retryable, &clock);
    let [Action::Wait { until_ms }] = wait[..] else {
        panic!("{wait:?}")
    };
    clock.0 = until_ms;
    let next = machine.on(&mut run, Event::TimerFired, clock.0).unwrap();
    assert_eq!(next, [undo("a", 2)]);
    let next = report(&machine, &mut run, &next[0], Outcome::Retryable, &clock);
    assert_eq!(next, [Action::Finish(RunStatus::CompensationFailed)]);
    assert_eq!(run.error.as_ref().unwrap().step, "a");
    assert!(
        run.error
            .as_ref()
            .unwrap()
            .message
            .starts_with("compensation failed")
    );
    assert!(machine.retryable(&run));
    // Nothing but a retry moves it.
    for event in [
        Event::Start,
        Event::Recovered,
        Event::TimerFired,
        Event::Cancel,
    ] {
        let before = run.clone();
        assert!(machine.on(&mut run, event, clock.0).is_err(), "{event:?}");
        assert_eq!(run, before);
    }
    let next = machine.on(&mut run, Event::Retry, clock.0).unwrap();
    assert_eq!(next, [Action::Save, undo("a", 3)], "a new round, at once");
    assert_eq!(run.status, RunStatus::Compensating);
    assert_eq!(run.error.as_ref().unwrap().step, "b", "the cause again");
    let wait = report(&machine, &mut run, &next[1], Outcome::Retryable, &clock);
    assert!(matches!(wait[..], [Action::Wait { .. }]), "its own backoff");
    clock.0 += 10_000;
    let next = machine.on(&mut run, Event::TimerFired, clock.0).unwrap();
    assert_eq!(next, [undo("a", 4)]);
    let next = report(&machine, &mut run, &next[0], Outcome::Ok, &clock);
    assert_eq!(next, [Action::Finish(RunStatus::Compensated)]);
}

#[test]
fn a_restart_runs_the_attempt_that_was_in_flight_again_with_its_number() {
    let def = definition(&[("a", true, 3), ("b", true, 3)]);
    let machine = Lifecycle::new(&def);
    let clock = ManualClock(10);
    let mut run = new_run(&def, RunStatus::Running);
    let next = report(&machine, &mut run, &exec("a", 1), Outcome::Ok, &clock);
    assert_eq!(next, [exec("b", 1)]);
    // `b` was in flight when the host died: no entry. The restart asks for it again.
    assert_eq!(
        machine.on(&mut run, Event::Recovered, clock.0).unwrap(),
        [exec("b", 1)]
    );
}

#[test]
fn steps_are_matched_by_name_not_position() {
    let def = definition(&[("a", true, 3), ("b", true, 3)]);
    let machine = Lifecycle::new(&def);
    let clock = ManualClock(10);
    let mut run = new_run(&def, RunStatus::Running);
    // The record lists the states in another order, with one the definition lacks.
    run.steps.reverse();
    run.steps.insert(0, StepState::pending("gone"));
    let next = machine.on(&mut run, Event::Start, clock.0).unwrap();
    assert_eq!(next, [exec("a", 1)]);
    let next = report(&machine, &mut run, &next[0], Outcome::Ok, &clock);
    assert_eq!(next, [exec("b", 1)]);
    let next = report(&machine, &mut run, &next[0], Outcome::Fatal, &clock);
    assert_eq!(next, [Action::Save, undo("a", 1)]);
}

#[test]
fn cancel_undoes_what_completed_and_ends_cancelled() {
    let def = definition(&[("a", true, 3), ("b", true, 3)]);
    let machine = Lifecycle::new(&def);
    let clock = ManualClock(10);
    let mut run = new_run(&def, RunStatus::Running);
    report(&machine, &mut run, &exec("a", 1), Outcome::Ok, &clock);
    let next = machine.on(&mut run, Event::Cancel, clock.0).unwrap();
    assert_eq!(next, [Action::Save, undo("a", 1)]);
    assert_eq!(
        machine.on(&mut run.clone(), Event::Cancel, clock.0),
        Err(Refused::Compensating)
    );
    let next = report(&machine, &mut run, &next[1], Outcome::Ok, &clock);
    assert_eq!(next, [Action::Finish(RunStatus::Cancelled)]);
    assert!(!machine.retryable(&run));

    let mut untouched = new_run(&def, RunStatus::Pending);
    assert_eq!(
        machine.on(&mut untouched, Event::Cancel, clock.0).unwrap(),
        [Action::Finish(RunStatus::Cancelled)],
        "nothing to undo"
    );
    assert_eq!(untouched.ended_ms, Some(10));
}

/// One thing that happens next in a random history.
#[derive(Debug, Clone)]
enum Happening {
    /// The attempt asked for ends so.
    Outcome(Outcome),
    /// The host dies during the attempt: no entry; the restart recovers the run.
    Crash,
    /// A cancel arrives between two attempts.
    Cancel,
    /// An operator retries (whatever the state).
    Retry,
    /// A timer fires this many ms before its time.
    EarlyTimer(u64),
}

fn happening() -> impl Strategy<Value = Happening> {
    prop_oneof![
        6 => prop_oneof![
            Just(Outcome::Ok),
            Just(Outcome::Retryable),
            Just(Outcome::Fatal),
            Just(Outcome::Host)
        ]
        .prop_map(Happening::Outcome),
        1 => Just(Happening::Crash),
        1 => Just(Happening::Cancel),
        1 => Just(Happening::Retry),
        1 => (1u64..50).prop_map(Happening::EarlyTimer),
    ]
}

/// A step of a random definition: a plugin step, a sleep, a plugin step whose condition
/// is false, or an await that times out (failing, or going on), by `kind`; with whether it
/// compensates and its attempts.
fn steps() -> impl Strategy<Value = Vec<(u8, bool, u32)>> {
    prop::collection::vec(
        (
            prop_oneof![4 => Just(0u8), 1 => Just(1), 1 => Just(2), 1 => Just(3), 1 => Just(4)],
            any::<bool>(),
            1u32..4,
        ),
        1..6,
    )
}

/// The definition of random `shape`.
fn mixed(shape: &[(u8, bool, u32)]) -> WorkflowDefinition {
    let spec: Vec<(String, bool, u32)> = shape
        .iter()
        .enumerate()
        .map(|(i, (_, compensate, attempts))| (format!("s{i}"), *compensate, *attempts))
        .collect();
    let borrowed: Vec<(&str, bool, u32)> =
        spec.iter().map(|(n, c, a)| (n.as_str(), *c, *a)).collect();
    let mut def = definition(&borrowed);
    for (step, (kind, _, _)) in def.steps.iter_mut().zip(shape) {
        match kind {
            1 => {
                step.plugin = None;
                step.sleep = Some(Duration::from_millis(100));
            }
            2 => step.when = Some(crate::model::Expr::new("false")),
            3 | 4 => {
                step.plugin = None;
                step.awaits = Some(crate::model::AwaitDefinition {
                    topic: None,
                    signal: Some("go".into()),
                    matches: None,
                    timeout: Some(Duration::from_millis(200)),
                    buffer: false,
                });
                step.on_timeout = (*kind == 4).then_some(crate::model::OnTimeout::Continue);
            }
            _ => {}
        }
    }
    def.validate().unwrap();
    def
}

/// What the property test saw executed.
#[derive(Debug, Default)]
struct Trace {
    /// Every attempt, with how it ended.
    attempts: Vec<(String, Direction, u32, Outcome)>,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn invariants_hold_over_random_outcomes_crashes_retries_and_cancels(
        shape in steps(),
        happenings in prop::collection::vec(happening(), 1..80),
    ) {
        let names: Vec<String> = (0..shape.len()).map(|i| format!("s{i}")).collect();
        let def = mixed(&shape);
        let machine = Lifecycle::new(&def);
        let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
        let mut clock = ManualClock(1_000);
        let mut run = new_run(&def, RunStatus::Pending);
        let mut trace = Trace::default();
        let mut actions = machine.on(&mut run, Event::Start, clock.0).unwrap();
        let mut compensation_began = false;
        // Successful executions and compensations, by step.
        let mut executed: HashMap<String, u32> = HashMap::new();
        let mut undone: HashMap<String, u32> = HashMap::new();
        // The step index of the last successful undo in the current round.
        let mut last_undo_index: Option<usize> = None;

        for happening in happenings {
            // Saves come first; then one of the others.
            prop_assert!(actions.len() <= 2);
            if actions.len() == 2 {
                prop_assert_eq!(&actions[0], &Action::Save);
            }
            let action = actions.last().cloned().unwrap();
            let before = run.clone();
            actions = match (&action, happening) {
                (Action::Finish(status), Happening::Retry) => {
                    prop_assert_eq!(*status, run.status);
                    let retryable = machine.retryable(&run);
                    match machine.on(&mut run, Event::Retry, clock.0) {
                        Ok(next) => {
                            prop_assert!(retryable, "a retry of a run that is done for good");
                            last_undo_index = None;
                            next
                        }
                        Err(_) => {
                            prop_assert!(!retryable);
                            prop_assert_eq!(&run, &before, "a refused retry changes nothing");
                            break;
                        }
                    }
                }
                (Action::Finish(status), other) => {
                    prop_assert_eq!(*status, run.status);
                    prop_assert!(status.is_terminal());
                    // Terminal: only a retry moves it.
                    let event = match other {
                        Happening::Cancel => Event::Cancel,
                        Happening::Crash => Event::Recovered,
                        _ => Event::TimerFired,
                    };
                    prop_assert!(machine.on(&mut run, event, clock.0).is_err());
                    prop_assert_eq!(&run, &before, "a terminal state changed without a retry");
                    break;
                }
                // What the machine decides itself is journaled whatever happens meanwhile.
                (Action::Park, _) => unreachable!("plugin steps never park"),
                (Action::Record(entry), _) => {
                    prop_assert!(!compensation_began, "{} is decided after compensation began", entry.step);
                    prop_assert_eq!(entry.direction, Direction::Execute);
                    if entry.outcome == Outcome::Ok {
                        *executed.entry(entry.step.clone()).or_default() += 1;
                    }
                    machine.on(&mut run, Event::Attempted(entry), clock.0).unwrap()
                }
                (Action::Wait { until_ms }, happening) => {
                    prop_assert!(*until_ms > clock.0, "a wait for the past");
                    match happening {
                        Happening::EarlyTimer(early) if *until_ms - clock.0 > early => {
                            clock.0 = *until_ms - early;
                            let next = machine.on(&mut run, Event::TimerFired, clock.0).unwrap();
                            prop_assert_eq!(&next, &vec![action.clone()], "early: the same wait");
                            next
                        }
                        Happening::Crash => machine.on(&mut run, Event::Recovered, clock.0).unwrap(),
                        Happening::Cancel => match machine.on(&mut run, Event::Cancel, clock.0) {
                            Ok(next) => next,
                            Err(_) => vec![action.clone()],
                        },
                        _ => {
                            clock.0 = *until_ms;
                            machine.on(&mut run, Event::TimerFired, clock.0).unwrap()
                        }
                    }
                }
                (Action::Attempt(a), happening) => {
                    let i = index[a.step.as_str()];
                    let config = &def.steps[i];
                    let state = run.step(&a.step).unwrap().clone();
                    match a.direction {
                        Direction::Execute => {
                            prop_assert!(!compensation_began, "{} executes after compensation began", a.step);
                            prop_assert_eq!(a.attempt, state.attempts + 1);
                            prop_assert!(a.attempt <= config.retry.attempts);
                            // Every step before it completed (or was skipped).
                            for earlier in &names[..i] {
                                let status = run.step(earlier).unwrap().status;
                                prop_assert!(matches!(status, StepStatus::Completed | StepStatus::Skipped), "{earlier} is {status:?}");
                            }
                        }
                        Direction::Compensate => {
                            compensation_began = true;
                            prop_assert!(config.compensate && config.plugin.is_some(), "{} compensates without `compensate`, or is no plugin step", a.step);
                            prop_assert!(executed.contains_key(&a.step), "{} is undone but never completed", a.step);
                            prop_assert!(!undone.contains_key(&a.step), "{} is undone twice", a.step);
                            prop_assert_eq!(a.attempt, state.compensation_attempts + 1);
                            prop_assert!(state.compensation_round() < config.retry.attempts);
                            if let Some(last) = last_undo_index {
                                prop_assert!(i < last, "undo of {} after a later step's: not in reverse order", a.step);
                            }
                        }
                    }
                    match happening {
                        Happening::Crash => machine.on(&mut run, Event::Recovered, clock.0).unwrap(),
                        Happening::Outcome(outcome) => {
                            clock.0 += 7;
                            trace.attempts.push((a.step.clone(), a.direction, a.attempt, outcome));
                            if outcome == Outcome::Ok {
                                match a.direction {
                                    Direction::Execute => *executed.entry(a.step.clone()).or_default() += 1,
                                    Direction::Compensate => {
                                        *undone.entry(a.step.clone()).or_default() += 1;
                                        last_undo_index = Some(i);
                                    }
                                }
                            }
                            report(&machine, &mut run, &action, outcome, &clock)
                        }
                        // Cancels and retries arrive between attempts: the attempt ends first.
                        Happening::Cancel => {
                            clock.0 += 7;
                            trace.attempts.push((a.step.clone(), a.direction, a.attempt, Outcome::Ok));
                            match a.direction {
                                Direction::Execute => *executed.entry(a.step.clone()).or_default() += 1,
                                Direction::Compensate => {
                                    *undone.entry(a.step.clone()).or_default() += 1;
                                    last_undo_index = Some(i);
                                }
                            }
                            let next = report(&machine, &mut run, &action, Outcome::Ok, &clock);
                            if run.status.is_terminal() {
                                next
                            } else {
                                match machine.on(&mut run, Event::Cancel, clock.0) {
                                    Ok(after) => after,
                                    Err(refused) => {
                                        prop_assert_eq!(refused, Refused::Compensating);
                                        next
                                    }
                                }
                            }
                        }
                        Happening::Retry | Happening::EarlyTimer(_) => {
                            prop_assert!(machine.on(&mut run.clone(), Event::Retry, clock.0).is_err(), "a retry of a running run");
                            vec![action.clone()]
                        }
                    }
                }
                (Action::Save, _) => unreachable!("a save is never last"),
            };
            // The status always agrees with the steps.
            if let Some(Action::Finish(status)) = actions.last() {
                let compensable_done: Vec<&String> = names
                    .iter()
                    .zip(&def.steps)
                    .filter(|(n, s)| s.compensate && s.plugin.is_some() && executed.contains_key(*n))
                    .map(|(n, _)| n)
                    .collect();
                match status {
                    RunStatus::Completed => {
                        prop_assert!(names.iter().all(|n| executed.contains_key(n)
                            || run.step(n).unwrap().status == StepStatus::Skipped));
                        prop_assert!(undone.is_empty());
                    }
                    RunStatus::Compensated | RunStatus::Cancelled => {
                        for step in &compensable_done {
                            prop_assert!(undone.contains_key(*step), "{status:?} but {step} was not undone");
                        }
                    }
                    RunStatus::CompensationFailed => {
                        prop_assert!(run.steps.iter().any(|s| s.status == StepStatus::CompensationFailed));
                    }
                    RunStatus::Failed => prop_assert!(compensable_done.is_empty()),
                    other => prop_assert!(false, "ended {other:?}"),
                }
                // A retry's round starts over for undos that failed; successful ones stay.
                if *status == RunStatus::CompensationFailed {
                    last_undo_index = None;
                    compensation_began = true;
                }
            }
        }
        prop_assert!(trace.attempts.len() <= 80);
    }
}

/// A definition with one parallel step of random branches (each step a plugin step with
/// whether it compensates and its attempts; a sleep by kind 1), an optional
/// `max-parallel`, and a last plugin step `z`.
fn fanned(branches: &[Vec<(u8, bool, u32)>], max_parallel: Option<u32>) -> WorkflowDefinition {
    let retry = |attempts: u32| json!({ "attempts": attempts, "initial-backoff": "100ms", "max-backoff": "1s", "jitter": 0.5 });
    let branches: Vec<serde_json::Value> = branches
        .iter()
        .enumerate()
        .map(|(b, steps)| {
            let steps: Vec<serde_json::Value> = steps
                .iter()
                .enumerate()
                .map(|(s, (kind, compensate, attempts))| match kind {
                    1 => json!({ "name": format!("b{b}s{s}"), "sleep": "100ms" }),
                    _ => json!({
                        "name": format!("b{b}s{s}"), "plugin": "p",
                        "compensate": compensate, "retry": retry(*attempts),
                    }),
                })
                .collect();
            json!({ "name": format!("b{b}"), "steps": steps })
        })
        .collect();
    let mut parallel = json!({ "name": "fan", "parallel": branches });
    if let Some(max) = max_parallel {
        parallel["max-parallel"] = json!(max);
    }
    let last = json!({ "name": "z", "plugin": "p", "retry": retry(1) });
    parsed(json!({ "steps": [parallel, last] }))
}

/// What a random parallel history does next: ends an attempt in flight (which, by the
/// number, with an outcome), crashes the host, cancels the run, or lets time pass.
#[derive(Debug, Clone)]
enum Turn {
    End(usize, Outcome),
    Crash,
    Cancel,
    Time,
}

fn turn() -> impl Strategy<Value = Turn> {
    prop_oneof![
        8 => (any::<usize>(), prop_oneof![
            4 => Just(Outcome::Ok),
            1 => Just(Outcome::Retryable),
            1 => Just(Outcome::Fatal),
        ]).prop_map(|(i, o)| Turn::End(i, o)),
        1 => Just(Turn::Crash),
        1 => Just(Turn::Cancel),
        1 => Just(Turn::Time),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Branches over random outcomes, crashes and cancels, with several attempts in flight:
    /// no step is offered while in flight, nothing executes once compensation began and
    /// nothing compensates while a step executes, a crash offers again every attempt that
    /// was in flight, each branch is undone in reverse order, no run ends with an attempt
    /// in flight, and the end agrees with what was done and undone.
    #[test]
    fn branches_hold_the_invariants_with_attempts_in_flight(
        branches in prop::collection::vec(
            prop::collection::vec((prop_oneof![5 => Just(0u8), 1 => Just(1)], any::<bool>(), 1u32..3), 1..4),
            2..4,
        ),
        max_parallel in prop::option::of(1u32..3),
        turns in prop::collection::vec(turn(), 1..120),
    ) {
        let def = fanned(&branches, max_parallel);
        let machine = Lifecycle::new(&def);
        let mut clock = ManualClock(1_000);
        let mut run = new_run(&def, RunStatus::Pending);
        let mut flights: Vec<Attempt> = Vec::new();
        let (mut timer, mut ended) = (None::<u64>, None::<RunStatus>);
        let mut executed: HashMap<String, u32> = HashMap::new();
        let mut undone: HashMap<String, u32> = HashMap::new();
        let mut compensation_began = false;
        let mut pending = machine.on(&mut run, Event::Start, clock.0).unwrap();
        let position = |name: &str| -> (usize, usize) {
            let (b, s) = name.trim_start_matches('b').split_once('s').unwrap();
            (b.parse().unwrap(), s.parse().unwrap())
        };
        for turn in turns {
            // Take every action: attempts go in flight, records are journaled at once.
            while !pending.is_empty() {
                let mut next = Vec::new();
                for action in std::mem::take(&mut pending) {
                    match action {
                        Action::Save => {}
                        Action::Attempt(a) => {
                            prop_assert!(!flights.iter().any(|f| f.step == a.step), "{} offered in flight", a.step);
                            match a.direction {
                                Direction::Execute => {
                                    prop_assert!(!compensation_began, "{} executes after compensation began", a.step);
                                    prop_assert_eq!(run.status, RunStatus::Running);
                                }
                                Direction::Compensate => {
                                    prop_assert!(executed.contains_key(&a.step), "{} undone, never done", a.step);
                                    prop_assert!(!undone.contains_key(&a.step), "{} undone twice", a.step);
                                    prop_assert!(flights.iter().all(|f| f.direction == Direction::Compensate), "an undo while a step executes");
                                    if a.step != "z" {
                                        let (b, s) = position(&a.step);
                                        for (name, _) in executed.iter().filter(|(n, _)| n.as_str() != "z") {
                                            let (nb, ns) = position(name);
                                            let compensates = branches[nb][ns].1;
                                            prop_assert!(!(nb == b && ns > s && compensates && !undone.contains_key(name)), "{} undone before {name}", a.step);
                                        }
                                    }
                                }
                            }
                            run.step_mut(&a.step).unwrap().in_flight = true;
                            flights.push(a);
                        }
                        Action::Record(entry) => {
                            next.extend(machine.on(&mut run, Event::Attempted(&entry), clock.0).unwrap());
                        }
                        Action::Wait { until_ms } => timer = Some(until_ms),
                        Action::Park => prop_assert!(false, "nothing here parks"),
                        Action::Finish(status) => {
                            prop_assert!(flights.is_empty(), "ended {status:?} with attempts in flight");
                            ended = Some(status);
                        }
                    }
                }
                compensation_began |= run.status == RunStatus::Compensating;
                pending = next;
            }
            if ended.is_some() {
                break;
            }
            pending = match turn {
                Turn::End(i, outcome) if !flights.is_empty() => {
                    let a = flights.remove(i % flights.len());
                    clock.0 += 7;
                    if outcome == Outcome::Ok {
                        let done = match a.direction {
                            Direction::Execute => &mut executed,
                            Direction::Compensate => &mut undone,
                        };
                        *done.entry(a.step.clone()).or_default() += 1;
                    }
                    report(&machine, &mut run, &Action::Attempt(a), outcome, &clock)
                }
                Turn::Crash => {
                    // The restart knows nothing in flight, and must make each again.
                    let lost = std::mem::take(&mut flights);
                    for step in &mut run.steps {
                        step.in_flight = false;
                    }
                    timer = None;
                    let again = machine.on(&mut run, Event::Recovered, clock.0).unwrap();
                    for a in &lost {
                        prop_assert!(again.contains(&Action::Attempt(a.clone())), "{a:?} lost at a crash: {again:?}");
                    }
                    again
                }
                Turn::Cancel => machine.on(&mut run, Event::Cancel, clock.0).unwrap_or_default(),
                _ if flights.is_empty() => {
                    let Some(due) = timer.take() else {
                        prop_assert!(false, "stuck: nothing in flight, no timer: {run:?}");
                        unreachable!()
                    };
                    clock.0 = clock.0.max(due);
                    machine.on(&mut run, Event::TimerFired, clock.0).unwrap()
                }
                _ => Vec::new(),
            };
        }
        let compensable = |name: &String| {
            name == "z" || { let (b, s) = position(name); branches[b][s].1 && branches[b][s].0 == 0 }
        };
        match ended {
            Some(RunStatus::Completed) => prop_assert!(undone.is_empty()),
            Some(RunStatus::Compensated | RunStatus::Cancelled) => {
                for step in executed.keys().filter(|n| compensable(n)) {
                    prop_assert!(undone.contains_key(step), "{step} done, not undone");
                }
            }
            Some(RunStatus::Failed) => {
                prop_assert!(!executed.keys().any(compensable), "failed with steps to undo");
            }
            Some(RunStatus::CompensationFailed) | None => {}
            Some(other) => prop_assert!(false, "ended {other:?}"),
        }
    }
}
