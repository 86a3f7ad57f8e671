//! A bench for one checker's unit tests: the shared model, the checker, and a bystander
//! core, fed hand-written steps (an input and the actions a core "drained" for it).
//!
//! The bystander is a real `ClusterState` built from the same configuration that never
//! hears of the fake steps: its getters describe a core that did nothing, which is how
//! the cross-checking rules (live counts, deadline probes) are made to fire.

use std::time::{Duration, Instant};

use clutch_proto::{
    Action, ClusterState, CommandError, Config, ConfigBuilder, Event, ExitStatus, Pid, Signal,
    Slot, SpawnError, SpawnErrorKind, WorkerId,
};

use super::model::Model;
use super::Input;
use super::{Bounds, Concern, Findings, Violation};
use crate::input::SPAWN_ERROR;

pub(crate) const MS: Duration = Duration::from_millis(1);

const BOUNDS: Bounds = Bounds {
    spawn_latency: MS,
    kill_latency: MS,
};

/// A configuration with `workers` workers and defaults otherwise, to adjust.
pub(crate) fn config(workers: usize) -> ConfigBuilder {
    let mut b = Config::builder();
    b.workers(workers);
    b
}

/// One checker on the bench. See the module documentation.
pub(crate) struct Bench<C: Concern> {
    pub(crate) model: Model,
    pub(crate) checker: C,
    pub(crate) cluster: ClusterState,
    found: Vec<Violation>,
}

impl<C: Concern> Bench<C> {
    pub(crate) fn new(config: &mut ConfigBuilder, checker: C) -> Self {
        let config = config.build().expect("a valid test config");
        Self::mismatched(&config, config.clone(), checker)
    }

    /// The model believes `believed`, the bystander core runs `core`.
    pub(crate) fn mismatched(believed: &Config, core: Config, checker: C) -> Self {
        let base = Instant::now();
        Self {
            model: Model::new(believed, BOUNDS, base),
            checker,
            cluster: ClusterState::new(core, base),
            found: Vec::new(),
        }
    }

    fn hook(&mut self, hook: impl FnOnce(&mut C, &Model, &ClusterState, &mut Findings<'_>)) {
        let mut out = Findings {
            checker: self.checker.name(),
            owns: self.checker.checks(),
            at: self.model.now(),
            found: &mut self.found,
        };
        hook(&mut self.checker, &self.model, &self.cluster, &mut out);
    }

    /// A step at `at` driven by `input` (`None`: the cluster's creation), in which the
    /// core answered `result` and drained `actions`.
    pub(crate) fn step_with(
        &mut self,
        at: Duration,
        input: Option<Input>,
        result: Result<(), CommandError>,
        actions: &[Action],
    ) -> &mut Self {
        self.model.begin_step(at, input, &self.cluster);
        self.hook(|c, m, cluster, out| c.on_input(m, cluster, out));
        if input.is_some() {
            self.hook(|c, m, _, out| c.on_result(m, result, out));
        }
        for action in actions {
            self.hook(|c, m, _, out| c.on_action(m, action, out));
            self.model.apply(action);
        }
        self.model.end_step(&self.cluster);
        self.hook(|c, m, cluster, out| c.on_step_end(m, cluster, out));
        self
    }

    /// A step whose input the core answered `Ok`.
    pub(crate) fn step(
        &mut self,
        at: Duration,
        input: Option<Input>,
        actions: &[Action],
    ) -> &mut Self {
        self.step_with(at, input, Ok(()), actions)
    }

    /// Workers `1..=n` spawned in slots `0..n` at creation, started as pid `100 + id`,
    /// and ready, all at time zero.
    pub(crate) fn boot(&mut self, n: u64) -> &mut Self {
        let spawns: Vec<Action> = (1..=n).map(|id| spawn(id, id as usize - 1, 1)).collect();
        self.step(Duration::ZERO, None, &spawns);
        for id in 1..=n {
            let (w, slot, pid) = (WorkerId(id), id as usize - 1, pid(id));
            self.step(
                Duration::ZERO,
                Some(Input::Spawned { id: w, pid }),
                &[started(id, slot, 1)],
            );
            let mut actions = vec![ready(id, slot)];
            if id == 1 {
                actions.push(Action::Event(Event::Listening { id: w }));
            }
            self.step(Duration::ZERO, Some(Input::Ready { id: w }), &actions);
        }
        self
    }

    /// Runs the checker's probes due at `at`.
    pub(crate) fn probes(&mut self, at: Duration) -> &mut Self {
        self.model.set_now(at);
        self.hook(|c, m, cluster, out| c.on_probes(m, cluster, out));
        self
    }

    /// The liveness check at `at`.
    pub(crate) fn liveness(&mut self, at: Duration) -> &mut Self {
        self.model.set_now(at);
        self.hook(|c, m, cluster, out| c.on_liveness(m, cluster, out));
        self
    }

    /// The end of the run at `at`.
    pub(crate) fn end(&mut self, at: Duration) -> &mut Self {
        self.model.set_now(at);
        self.hook(|c, m, _, out| c.on_end(m, out));
        self
    }

    #[track_caller]
    pub(crate) fn assert_clean(&self) -> &Self {
        assert!(
            self.found.is_empty(),
            "a legitimate trace was flagged: {:?}",
            self.found
        );
        self
    }

    #[track_caller]
    pub(crate) fn assert_fired(&self, check: &str) {
        assert!(
            self.found.iter().any(|v| v.check == check),
            "expected [{check}], got {:?}",
            self.found
        );
        assert!(self.found.iter().all(|v| v.checker == self.checker.name()));
    }
}

/// The pid the bench gives worker `id`.
pub(crate) fn pid(id: u64) -> Pid {
    100 + id as Pid
}

pub(crate) fn spawn(id: u64, slot: usize, generation: u64) -> Action {
    Action::Spawn {
        id: WorkerId(id),
        slot: Slot(slot),
        generation,
    }
}

pub(crate) fn started(id: u64, slot: usize, generation: u64) -> Action {
    Action::Event(Event::WorkerStarted {
        id: WorkerId(id),
        slot: Slot(slot),
        pid: pid(id),
        generation,
    })
}

pub(crate) fn ready(id: u64, slot: usize) -> Action {
    Action::Event(Event::WorkerReady {
        id: WorkerId(id),
        slot: Slot(slot),
        pid: pid(id),
    })
}

pub(crate) fn signal(id: u64, signal: Signal) -> Action {
    Action::Signal {
        id: WorkerId(id),
        pid: pid(id),
        signal,
    }
}

pub(crate) fn event(event: Event) -> Action {
    Action::Event(event)
}

/// Worker `id` (in `slot`, ready or not) died `uptime` after it started.
pub(crate) fn died(id: u64, slot: usize, was_ready: bool, uptime: Duration) -> Action {
    event(Event::WorkerDied {
        id: WorkerId(id),
        slot: Slot(slot),
        pid: Some(pid(id)),
        status: ExitStatus::Code(1),
        was_ready,
        uptime,
    })
}

/// The input that reports worker `id`'s exit, as `died` describes it.
pub(crate) fn exited(id: u64) -> Input {
    Input::Exited {
        id: WorkerId(id),
        status: ExitStatus::Code(1),
    }
}

pub(crate) fn spawn_failed(id: u64, slot: usize, kind: SpawnErrorKind) -> Action {
    event(Event::WorkerSpawnFailed {
        id: WorkerId(id),
        slot: Slot(slot),
        error: SpawnError::new(kind, SPAWN_ERROR),
    })
}
