//! The memory the machine has to give.

/// The memory the OS says is available, from /proc/meminfo (None elsewhere): what a decoded
/// image folder and a model's training may take.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
