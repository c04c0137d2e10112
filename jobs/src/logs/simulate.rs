//! Simulated logs for `rtmas produce`: several services on several hosts,
//! a daily rise and fall in volume, and labelled anomalies (error bursts,
//! latency spikes, a service going silent, a new kind of error) whose kind,
//! service and time span are written down as ground truth, so detection can
//! be scored.
//!
//! Output depends only on the seed and the settings: the same seed gives
//! the same records, timestamps and ids.

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// A kind of injected anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// About half of the service's records are errors.
    ErrorBurst,
    /// The service's latencies are about eight times their usual.
    LatencySpike,
    /// The service writes nothing.
    Silence,
    /// The service's errors include a message template never seen before.
    NewError,
}

impl AnomalyKind {
    /// Every kind, in the order a plan uses them.
    pub const ALL: [AnomalyKind; 4] = [
        AnomalyKind::ErrorBurst,
        AnomalyKind::LatencySpike,
        AnomalyKind::Silence,
        AnomalyKind::NewError,
    ];
}

/// One injected anomaly: the ground truth a detector is scored against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// What happens.
    pub kind: AnomalyKind,
    /// To which service.
    pub service: String,
    /// From when (included).
    pub start: DateTime<Utc>,
    /// Until when (excluded).
    pub end: DateTime<Utc>,
}

impl Anomaly {
    fn covers(&self, service: &str, at: DateTime<Utc>) -> bool {
        self.service == service && self.start <= at && at < self.end
    }
}

/// A simulated service: its hosts, usual latency and error rate, and what
/// it says.
struct Profile {
    name: &'static str,
    hosts: u32,
    /// Median latency in milliseconds.
    latency_ms: f64,
    /// Share of records that are errors.
    error_rate: f64,
    info: &'static [&'static str],
    warn: &'static [&'static str],
    error: &'static [&'static str],
}

const PROFILES: [Profile; 5] = [
    Profile {
        name: "checkout",
        hosts: 3,
        latency_ms: 120.0,
        error_rate: 0.01,
        info: &["order placed", "cart updated", "checkout page rendered"],
        warn: &["payment provider slow to answer", "cart total recomputed"],
        error: &["payment declined by provider", "order service timed out"],
    },
    Profile {
        name: "search",
        hosts: 4,
        latency_ms: 45.0,
        error_rate: 0.005,
        info: &["query served", "suggestions served", "index segment merged"],
        warn: &["query rewritten after no results", "cache miss storm"],
        error: &["index shard unavailable", "query parser failed"],
    },
    Profile {
        name: "auth",
        hosts: 2,
        latency_ms: 30.0,
        error_rate: 0.008,
        info: &["user logged in", "token refreshed", "session ended"],
        warn: &["password retry limit near", "token close to expiry"],
        error: &["signature check failed", "user store unreachable"],
    },
    Profile {
        name: "inventory",
        hosts: 2,
        latency_ms: 80.0,
        error_rate: 0.01,
        info: &["stock level read", "reservation made", "restock recorded"],
        warn: &["stock level stale", "reservation retried"],
        error: &["reservation conflict", "warehouse feed rejected"],
    },
    Profile {
        name: "payments",
        hosts: 3,
        latency_ms: 200.0,
        error_rate: 0.012,
        info: &["charge authorised", "refund issued", "ledger entry written"],
        warn: &["fraud score high", "currency rate stale"],
        error: &["charge failed", "ledger write conflict"],
    },
];

/// The error message of [`AnomalyKind::NewError`]; no service writes it
/// otherwise.
pub const NEW_ERROR_MESSAGE: &str = "unhandled NullReference in PricingEngine.compute (build 4711)";

/// The names of the simulated services.
pub fn service_names() -> Vec<&'static str> {
    PROFILES.iter().map(|p| p.name).collect()
}

/// One anomaly of each kind, each on a service picked by the seed, spread
/// over `[start, start + span)`: each lasts a tenth of the span and they do
/// not overlap.
pub fn plan_anomalies(seed: u64, start: DateTime<Utc>, span: TimeDelta) -> Vec<Anomaly> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xa110_ca7e);
    let length = span / 10;
    let slot = span / 5;
    AnomalyKind::ALL
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            let profile = &PROFILES[rng.random_range(0..PROFILES.len())];
            let begin = start + slot * (i as i32 + 1) - length / 2;
            Anomaly {
                kind: *kind,
                service: profile.name.to_owned(),
                start: begin,
                end: begin + length,
            }
        })
        .collect()
}

/// One simulated record, ready to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimRecord {
    /// Unique id of the record.
    pub event_id: String,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// The service; also the Kafka key.
    pub service: String,
    /// The host.
    pub host: String,
    /// `info`, `warn` or `error`.
    pub level: String,
    /// The text.
    pub message: String,
    /// Request latency in milliseconds.
    pub latency_ms: f64,
    /// HTTP status of the request.
    pub status: u16,
    /// Trace id of the request.
    pub trace_id: String,
}

/// An endless, repeatable stream of simulated records.
pub struct Simulator {
    rng: StdRng,
    at: DateTime<Utc>,
    rate: f64,
    anomalies: Vec<Anomaly>,
}

impl Simulator {
    /// Records from `start` on, `rate` per second on average (more by day,
    /// fewer by night), with `anomalies` injected.
    pub fn new(seed: u64, start: DateTime<Utc>, rate: f64, anomalies: Vec<Anomaly>) -> Simulator {
        Simulator {
            rng: StdRng::seed_from_u64(seed),
            at: start,
            rate: rate.max(f64::MIN_POSITIVE),
            anomalies,
        }
    }

    /// Volume at `at` relative to the daily average: highest mid-afternoon
    /// (UTC), lowest before dawn, between 0.6 and 1.4.
    fn daily_factor(at: DateTime<Utc>) -> f64 {
        let hour = f64::from(at.hour()) + f64::from(at.minute()) / 60.0;
        1.0 + 0.4 * (std::f64::consts::TAU * (hour - 9.0) / 24.0).sin()
    }

    fn active(&self, kind: AnomalyKind, service: &str, at: DateTime<Utc>) -> bool {
        self.anomalies
            .iter()
            .any(|a| a.kind == kind && a.covers(service, at))
    }

    fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        options[self.rng.random_range(0..options.len())]
    }
}

impl Iterator for Simulator {
    type Item = SimRecord;

    fn next(&mut self) -> Option<SimRecord> {
        loop {
            // Exponential gaps: a Poisson stream at the time of day's rate.
            let rate = self.rate * Self::daily_factor(self.at);
            let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
            let gap_us = (-u.ln() / rate * 1e6).min(3.6e9);
            self.at += TimeDelta::microseconds(gap_us as i64);

            let profile = &PROFILES[self.rng.random_range(0..PROFILES.len())];
            let at = self.at;
            if self.active(AnomalyKind::Silence, profile.name, at) {
                continue;
            }

            let burst = self.active(AnomalyKind::ErrorBurst, profile.name, at);
            let error_rate = if burst { 0.5 } else { profile.error_rate };
            let roll: f64 = self.rng.random();
            let (level, message) = if roll < error_rate {
                let new = self.active(AnomalyKind::NewError, profile.name, at)
                    && self.rng.random_bool(0.6);
                let message = if new {
                    NEW_ERROR_MESSAGE
                } else {
                    self.pick(profile.error)
                };
                ("error", message)
            } else if roll < error_rate + 0.05 {
                ("warn", self.pick(profile.warn))
            } else {
                ("info", self.pick(profile.info))
            };

            // Log-normal latencies around the service's median.
            let spread: f64 = (0..4).map(|_| self.rng.random::<f64>()).sum::<f64>() - 2.0;
            let mut latency_ms = profile.latency_ms * (spread * 0.6).exp();
            if self.active(AnomalyKind::LatencySpike, profile.name, at) {
                latency_ms *= 8.0;
            }
            let status = match level {
                "error" => [500, 502, 503, 504][self.rng.random_range(0..4)],
                "warn" => 429,
                _ => 200,
            };
            let host = format!(
                "{}-{}",
                profile.name,
                self.rng.random_range(1..=profile.hosts)
            );
            let event_id = format!("{:032x}", self.rng.random::<u128>());
            let trace_id = format!("{:016x}", self.rng.random::<u64>());
            return Some(SimRecord {
                event_id,
                timestamp: at,
                service: profile.name.to_owned(),
                host,
                level: level.to_owned(),
                message: message.to_owned(),
                latency_ms: (latency_ms * 1000.0).round() / 1000.0,
                status,
                trace_id,
            });
        }
    }
}

#[cfg(test)]
mod tests;
