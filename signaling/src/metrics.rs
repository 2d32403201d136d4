//! The server's Prometheus metrics. Each `Server` owns its own recorder (no global), so several
//! servers in one test process count separately.

use hearth_proto::ErrorCode;
use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Metric names, as scraped.
pub mod names {
    /// Open WebSocket connections.
    pub const CONNECTIONS: &str = "hearth_connections";
    /// Rooms with anyone in them or waiting.
    pub const ROOMS: &str = "hearth_rooms";
    /// Text frames received from clients.
    pub const MESSAGES_IN: &str = "hearth_messages_in_total";
    /// Frames written to clients.
    pub const MESSAGES_OUT: &str = "hearth_messages_out_total";
    /// `error` messages sent, by `code`.
    pub const ERRORS: &str = "hearth_errors_total";
    /// Time from reading a `signal` to writing it to its recipient.
    pub const RELAY_LATENCY: &str = "hearth_relay_latency_seconds";
    /// Sessions taken up again from another connection.
    pub const RESUMES: &str = "hearth_resumes_total";
}

/// Handles to every metric, cheap to update on the hot path (atomics, no lookups).
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// See [`names::CONNECTIONS`].
    pub connections: Gauge,
    /// See [`names::ROOMS`].
    pub rooms: Gauge,
    /// See [`names::MESSAGES_IN`].
    pub messages_in: Counter,
    /// See [`names::MESSAGES_OUT`].
    pub messages_out: Counter,
    /// See [`names::RELAY_LATENCY`].
    pub relay_latency: Histogram,
    /// See [`names::RESUMES`].
    pub resumes: Counter,
    errors: Vec<(ErrorCode, Counter)>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

const RELAY_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

impl Metrics {
    /// A fresh set, all zero.
    pub fn new() -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(names::RELAY_LATENCY.to_owned()),
                &RELAY_BUCKETS,
            )
            .map(PrometheusBuilder::build_recorder)
            // Only fails on an empty bucket list, which the constant is not.
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let meta = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));
        let describe = |name: &'static str, unit: Option<Unit>, help: &'static str| match name {
            names::CONNECTIONS | names::ROOMS => {
                recorder.describe_gauge(name.into(), unit, help.into())
            }
            names::RELAY_LATENCY => recorder.describe_histogram(name.into(), unit, help.into()),
            _ => recorder.describe_counter(name.into(), unit, help.into()),
        };
        describe(names::CONNECTIONS, None, "Open WebSocket connections.");
        describe(
            names::ROOMS,
            None,
            "Rooms with someone in the call or waiting.",
        );
        describe(
            names::MESSAGES_IN,
            None,
            "Text frames received from clients.",
        );
        describe(names::MESSAGES_OUT, None, "Frames written to clients.");
        describe(
            names::ERRORS,
            None,
            "Error messages sent to clients, by code.",
        );
        describe(
            names::RELAY_LATENCY,
            Some(Unit::Seconds),
            "Time from reading a signal to writing it to its recipient.",
        );
        describe(
            names::RESUMES,
            None,
            "Sessions taken up again from another connection.",
        );
        let errors = ErrorCode::ALL
            .into_iter()
            .map(|code| {
                let key = Key::from_parts(names::ERRORS, vec![Label::new("code", code.as_str())]);
                (code, recorder.register_counter(&key, &meta))
            })
            .collect();
        Metrics {
            handle: recorder.handle(),
            connections: recorder.register_gauge(&Key::from_name(names::CONNECTIONS), &meta),
            rooms: recorder.register_gauge(&Key::from_name(names::ROOMS), &meta),
            messages_in: recorder.register_counter(&Key::from_name(names::MESSAGES_IN), &meta),
            messages_out: recorder.register_counter(&Key::from_name(names::MESSAGES_OUT), &meta),
            relay_latency: recorder
                .register_histogram(&Key::from_name(names::RELAY_LATENCY), &meta),
            resumes: recorder.register_counter(&Key::from_name(names::RESUMES), &meta),
            errors,
            recorder,
        }
    }

    /// Counts one `error` message sent with `code`.
    pub fn error(&self, code: ErrorCode) {
        if let Some((_, counter)) = self.errors.iter().find(|(c, _)| *c == code) {
            counter.increment(1);
        }
    }

    /// Folds the relay latencies recorded since the last time into the histogram's buckets. The
    /// recorder keeps every sample until then (20,000 a second at full load): without this,
    /// a server nobody scrapes grows without end. (`PrometheusBuilder::build_recorder` leaves
    /// it to the owner; the hub's once-a-second sweep calls it.)
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        // Keeps the recorder alive for as long as the handles that write into it.
        let _ = &self.recorder;
        self.handle.render()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
