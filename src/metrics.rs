//! One way to count. Every subsystem names its metrics as [`Family`] constants beside the
//! counters they describe and reports their values through [`Counted`]; `/metrics` renders
//! the Prometheus text format from one table of sources with [`render`]. Pure: no locks, no
//! I/O; what a source reads (atomics, a snapshot taken from a worker) is its own business.

use std::fmt::Write;

/// A metric's Prometheus type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only ever goes up (`_total`).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One metric: its name without the `rturn_` prefix, its type and its help line.
#[derive(Debug)]
pub struct Family {
    /// The name after `rturn_`.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// The `# HELP` text.
    pub help: &'static str,
}

impl Family {
    /// A counter.
    pub const fn counter(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            kind: Kind::Counter,
            help,
        }
    }

    /// A gauge.
    pub const fn gauge(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            kind: Kind::Gauge,
            help,
        }
    }
}

/// One value of a family, with at most one label.
#[derive(Debug)]
struct Sample {
    family: &'static Family,
    label: Option<(&'static str, String)>,
    value: u64,
}

/// The values a scrape collects, in the order they were reported.
#[derive(Debug, Default)]
pub struct Report {
    samples: Vec<Sample>,
}

impl Report {
    /// A value without labels.
    pub fn value(&mut self, family: &'static Family, value: u64) {
        self.samples.push(Sample {
            family,
            label: None,
            value,
        });
    }

    /// A value with one label, `family{key="value"}`.
    pub fn labelled(
        &mut self,
        family: &'static Family,
        key: &'static str,
        label: impl Into<String>,
        value: u64,
    ) {
        self.samples.push(Sample {
            family,
            label: Some((key, label.into())),
            value,
        });
    }

    /// One value per `(label, value)` pair under the same key.
    pub fn each<L: Into<String>>(
        &mut self,
        family: &'static Family,
        key: &'static str,
        values: impl IntoIterator<Item = (L, u64)>,
    ) {
        for (label, value) in values {
            self.labelled(family, key, label, value);
        }
    }
}

/// Something that has counters to show: a subsystem, or a snapshot of one.
pub trait Counted {
    /// Adds this source's current values to `report`.
    fn report(&self, report: &mut Report);
}

/// The Prometheus text format of every source, in table order. A family's samples are kept
/// together (as the format requires) even when two sources report into it; families come in
/// the order they were first reported.
pub fn render(sources: &[&dyn Counted]) -> String {
    let mut report = Report::default();
    for source in sources {
        source.report(&mut report);
    }
    let mut order: Vec<&'static Family> = Vec::new();
    for sample in &report.samples {
        if !order.iter().any(|f| std::ptr::eq(*f, sample.family)) {
            order.push(sample.family);
        }
    }
    let mut out = String::with_capacity(64 * report.samples.len() + 4096);
    for family in order {
        let kind = match family.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP rturn_{} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE rturn_{} {kind}", family.name);
        for sample in report
            .samples
            .iter()
            .filter(|s| std::ptr::eq(s.family, family))
        {
            match &sample.label {
                None => {
                    let _ = writeln!(out, "rturn_{} {}", family.name, sample.value);
                }
                Some((key, label)) => {
                    let label = label.replace('\\', "\\\\").replace('"', "\\\"");
                    let _ = writeln!(
                        out,
                        "rturn_{}{{{key}=\"{label}\"}} {}",
                        family.name, sample.value
                    );
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    static PACKETS: Family = Family::counter("packets_total", "Packets, by outcome.");
    static OPEN: Family = Family::gauge("open", "Open things.");

    struct Fixed(&'static str, u64);

    impl Counted for Fixed {
        fn report(&self, report: &mut Report) {
            report.labelled(&PACKETS, "outcome", self.0, self.1);
        }
    }

    struct Gauge;

    impl Counted for Gauge {
        fn report(&self, report: &mut Report) {
            report.value(&OPEN, 3);
        }
    }

    #[test]
    fn two_sources_of_one_family_render_as_one_block_in_first_seen_order() {
        let text = render(&[&Fixed("received", 5), &Gauge, &Fixed("dropped", 1)]);
        assert_eq!(
            text,
            "# HELP rturn_packets_total Packets, by outcome.\n\
             # TYPE rturn_packets_total counter\n\
             rturn_packets_total{outcome=\"received\"} 5\n\
             rturn_packets_total{outcome=\"dropped\"} 1\n\
             # HELP rturn_open Open things.\n\
             # TYPE rturn_open gauge\n\
             rturn_open 3\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render(&[&Fixed("a\"b\\c", 1)]);
        assert!(
            text.contains("rturn_packets_total{outcome=\"a\\\"b\\\\c\"} 1\n"),
            "{text}"
        );
    }
}
