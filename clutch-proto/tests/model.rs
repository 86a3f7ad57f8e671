//! Model-based test (proptest-state-machine): which workers exist, which are ready,
//! which are leaving, and what the target is, under any sequence of spawn reports,
//! READY / STOPPING / WATCHDOG, exits, TERM, TTIN, TTOU and USR1 — against a reference
//! model small enough to be obviously right. Spawn failures come in every kind: an
//! exec failure before any worker started ends the cluster, a cancelled spawn of a
//! worker that is not leaving counts as a resource failure, and every other failure
//! just empties the slot.
//!
//! Time stands still (every input at the same instant), so every death is young and its
//! slot waits out a backoff that never ends: no respawns, no timers. That keeps the model
//! to a few lines per input while still covering the bookkeeping the core gets wrong
//! most easily: attached versus leaving workers, slots emptied by exits, stops decided
//! before a pid is known, scaling, and the shutdown that ends when the last one exits.

use std::collections::BTreeMap;
use std::time::Instant;

use clutch_proto::{
    ClusterState, Config, CrashBudget, ExitStatus, Input, Reply, Signal, SpawnError,
    SpawnErrorKind, WorkerId, WorkerState,
};
use proptest::prelude::*;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};

#[derive(Debug, Clone)]
struct ModelWorker {
    /// The slot it fills; `None` once it is leaving (detached).
    slot: Option<usize>,
    started: bool,
    ready: bool,
}

#[derive(Debug, Clone)]
struct Model {
    /// The worker filling each slot; `None` while the slot waits out its backoff.
    slots: Vec<Option<u64>>,
    workers: BTreeMap<u64, ModelWorker>,
    next_id: u64,
    /// Some spawn report was accepted.
    ever_started: bool,
    stopping: bool,
    exited: bool,
}

impl Model {
    fn new(target: usize) -> Self {
        let ids = 1..=target as u64;
        Self {
            slots: ids.clone().map(Some).collect(),
            workers: ids
                .map(|id| {
                    let w = ModelWorker {
                        slot: Some(id as usize - 1),
                        started: false,
                        ready: false,
                    };
                    (id, w)
                })
                .collect(),
            next_id: target as u64 + 1,
            ever_started: false,
            stopping: false,
            exited: false,
        }
    }

    /// Worker `id` left its slot without being asked: the slot waits out a backoff.
    fn depart(&mut self, id: u64) {
        let w = self.workers.get_mut(&id).expect("departing worker");
        if let Some(slot) = w.slot.take() {
            self.slots[slot] = None;
        }
    }

    fn begin_stopping(&mut self) {
        if !self.stopping {
            self.stopping = true;
            for w in self.workers.values_mut() {
                w.slot = None;
            }
            self.slots.iter_mut().for_each(|s| *s = None);
        }
    }

    fn ready_count(&self) -> usize {
        self.workers
            .values()
            .filter(|w| w.ready && w.slot.is_some())
            .count()
    }
}

struct Reference;

impl ReferenceStateMachine for Reference {
    type State = Model;
    type Transition = Input;

    fn init_state() -> BoxedStrategy<Model> {
        (1usize..=4).prop_map(Model::new).boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Input> {
        // Known ids mostly, and a couple never issued.
        let id = (1..state.next_id + 2).prop_map(WorkerId);
        prop_oneof![
            4 => id.clone().prop_map(|id| Input::Spawned { id, pid: 1000 + id.0 as u32 }),
            1 => (
                id.clone(),
                prop::sample::select(vec![
                    SpawnErrorKind::Resource,
                    SpawnErrorKind::Exec,
                    SpawnErrorKind::Other,
                    SpawnErrorKind::Cancelled,
                ])
            )
                .prop_map(|(id, kind)| Input::SpawnFailed { id, error: SpawnError::new(kind) }),
            4 => id.clone().prop_map(|id| Input::Ready { id }),
            1 => id.clone().prop_map(|id| Input::Stopping { id }),
            1 => id.clone().prop_map(|id| Input::Heartbeat { id }),
            3 => id.prop_map(|id| Input::Exited { id, status: ExitStatus::Code(1) }),
            1 => prop::sample::select(vec![
                Signal::Term,
                Signal::Ttin,
                Signal::Ttou,
                Signal::Usr1,
            ])
            .prop_map(Input::Signal),
        ]
        .boxed()
    }

    fn apply(mut m: Model, input: &Input) -> Model {
        if m.exited {
            return m;
        }
        let id = input.worker().map_or(0, |id| id.0);
        match *input {
            Input::Spawned { .. } => {
                if let Some(w) = m.workers.get_mut(&id) {
                    m.ever_started |= !w.started;
                    w.started = true;
                }
            }
            Input::SpawnFailed { error, .. } => {
                if m.workers.get(&id).is_some_and(|w| !w.started) {
                    m.depart(id);
                    m.workers.remove(&id);
                    // No reload here: every worker is of the first generation.
                    if error.kind == SpawnErrorKind::Exec && !m.ever_started {
                        m.begin_stopping();
                    }
                }
            }
            Input::Ready { .. } => {
                if let Some(w) = m.workers.get_mut(&id) {
                    if w.started && w.slot.is_some() {
                        w.ready = true;
                    }
                }
            }
            Input::Stopping { .. } => {
                if m.workers
                    .get(&id)
                    .is_some_and(|w| w.started && w.slot.is_some())
                {
                    m.depart(id);
                }
            }
            Input::Heartbeat { .. } | Input::Signal(Signal::Usr1) => {}
            Input::Exited { .. } => {
                if m.workers.contains_key(&id) {
                    m.depart(id);
                    m.workers.remove(&id);
                }
            }
            Input::Signal(Signal::Term) => m.begin_stopping(),
            Input::Signal(Signal::Ttin) => {
                if !m.stopping {
                    let id = m.next_id;
                    m.next_id += 1;
                    m.slots.push(Some(id));
                    let w = ModelWorker {
                        slot: Some(m.slots.len() - 1),
                        started: false,
                        ready: false,
                    };
                    m.workers.insert(id, w);
                }
            }
            Input::Signal(Signal::Ttou) => {
                if !m.stopping && m.slots.len() >= 2 {
                    if let Some(id) = m.slots.pop().flatten() {
                        m.workers.get_mut(&id).expect("current").slot = None;
                    }
                }
            }
            // Recycling (successors in a slot) is the unit tests' and the simulator's.
            Input::Signal(_)
            | Input::Recycle { .. }
            | Input::Timeout
            | Input::Shutdown
            | Input::ShutdownNow
            | Input::Reload
            | Input::Scale(_)
            | Input::Upgrade
            | Input::Successor(_) => unreachable!("not generated"),
        }
        if m.stopping && m.workers.is_empty() {
            m.exited = true;
        }
        m
    }
}

struct Sut {
    cluster: ClusterState,
    now: Instant,
}

impl StateMachineTest for Sut {
    type SystemUnderTest = Sut;
    type Reference = Reference;

    fn init_test(model: &Model) -> Sut {
        let config = Config::builder()
            .workers(model.slots.len())
            .crash_budget(CrashBudget {
                failures: 1000,
                ..CrashBudget::default()
            })
            .build()
            .unwrap();
        // The one clock read: a base for synthetic time (which then stands still).
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let mut cluster = ClusterState::new(config, now);
        while cluster.poll_action().is_some() {}
        Sut { cluster, now }
    }

    fn apply(mut sut: Sut, _model: &Model, input: Input) -> Sut {
        let (c, now) = (&mut sut.cluster, sut.now);
        assert_eq!(
            c.handle(now, input),
            Ok(Reply::Done),
            "facts always answer Done"
        );
        while c.poll_action().is_some() {}
        sut
    }

    fn check_invariants(sut: &Sut, model: &Model) {
        let c = &sut.cluster;
        c.check_invariants().unwrap();
        assert_eq!(c.is_exited(), model.exited, "exited");
        assert_eq!(c.live_workers(), model.workers.len(), "live workers");
        assert_eq!(c.ready_workers(), model.ready_count(), "ready workers");
        assert_eq!(c.target(), model.slots.len(), "target");
        for (&id, w) in &model.workers {
            let info = c.worker(WorkerId(id)).expect("a worker the model has");
            assert_eq!(info.pid.is_some(), w.started, "w{id} started");
            assert_eq!(
                info.stop_reason.is_some(),
                w.slot.is_none(),
                "w{id} leaving"
            );
            if let Some(slot) = w.slot {
                assert_eq!(info.slot.0, slot, "w{id} slot");
                assert_eq!(info.state == WorkerState::Ready, w.ready, "w{id} ready");
            }
        }
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    })]
    #[test]
    fn live_and_pending_workers_follow_the_model(sequential 1..60 => Sut);
}
