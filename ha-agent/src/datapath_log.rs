//! The XDP program's log in the agent's: the events the datapath reports
//! through aya-log (a VIP with no usable backend, an ownership lease that
//! ran out) become `tracing` events at the program's level, with target
//! `ha_xdp::events`. The program rate-limits them itself, in the kernel,
//! so whatever arrives is logged.

use aya::Ebpf;
use aya_log::EbpfLogger;
use tokio::{
    io::{Interest, unix::AsyncFd},
    task::JoinHandle,
};

/// Forwards the program's log records while it lives; stops when dropped.
pub(crate) struct DatapathLog {
    task: JoinHandle<()>,
}

impl DatapathLog {
    /// Starts forwarding the log of the program loaded into `ebpf`, on the
    /// current tokio runtime. None, with the reason logged, when there is
    /// no runtime (a tool that only test-runs the program, like the
    /// benchmark) or the program has no log (an object built before it had
    /// one): the datapath works the same without.
    pub(crate) fn start(ebpf: &mut Ebpf) -> Option<DatapathLog> {
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::debug!("no tokio runtime: the XDP program's log is not read");
            return None;
        }
        let logger = EbpfLogger::init_with_logger(ebpf, ToTracing)
            .map_err(|e| e.to_string())
            .and_then(|logger| {
                // SAFETY: the logger owns the descriptor of the program's
                // log ring buffer (a MapData it took from `ebpf`) and
                // returns that one from as_raw_fd for as long as it lives;
                // the AsyncFd owns the logger.
                unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) }
                    .map_err(|e| e.to_string())
            });
        let mut logger = match logger {
            Ok(logger) => logger,
            Err(e) => {
                tracing::warn!(error = %e, "the XDP program's log is not read");
                return None;
            }
        };
        let task = tokio::spawn(async move {
            while let Ok(mut ready) = logger.readable_mut().await {
                ready.get_inner_mut().flush();
                ready.clear_ready();
            }
        });
        Some(DatapathLog { task })
    }
}

impl Drop for DatapathLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `log::Log` that hands every record to `tracing`, as tracing-log's
/// `LogTracer` does for the process-wide logger (which the agent then
/// need not install).
struct ToTracing;

impl log::Log for ToTracing {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        // tracing's filter decides, in format_trace.
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        // Never fails: the io::Result is historical.
        let _ = tracing_log::format_trace(record);
    }

    fn flush(&self) {}
}
