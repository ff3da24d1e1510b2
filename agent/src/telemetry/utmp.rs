//! Logged-in users from the utmp file (`/run/utmp`, or `/var/run/utmp` on older systems).
//!
//! A utmp file is a sequence of fixed-size `struct utmp` records. On Linux with glibc or musl the layout is
//! the same on every 64-bit and 32-bit architecture (384 bytes; `ut_tv` is two 32-bit fields for
//! compatibility): `ut_type` (i16, then 2 bytes of padding), `ut_pid` (i32), `ut_line[32]`, `ut_id[4]`,
//! `ut_user[32]`, `ut_host[256]`, ... A record is a login when `ut_type == USER_PROCESS` (7). The file is
//! small and read whole (bounded); a partial trailing record is ignored. Parsing by hand keeps this to a
//! few checked lines instead of a dependency on a C struct binding.

use std::path::Path;

/// Size of one `struct utmp` record on Linux.
pub const RECORD_SIZE: usize = 384;
/// `ut_type` of a user login.
const USER_PROCESS: i16 = 7;
const USER_OFFSET: usize = 44;
const USER_LENGTH: usize = 32;
/// Largest utmp file read (about 10 000 records).
const MAX_BYTES: u64 = 4 * 1024 * 1024;
/// Where utmp lives, in the order tried.
pub const UTMP_PATHS: [&str; 2] = ["/run/utmp", "/var/run/utmp"];

/// The distinct user names logged in, sorted, from the first utmp file found; empty when none is readable.
pub fn logged_in_users() -> Vec<String> {
    UTMP_PATHS.iter().find_map(|path| read(Path::new(path))).unwrap_or_default()
}

/// The logged-in users of the utmp file at `path`, or `None` when it cannot be read.
pub fn read(path: &Path) -> Option<Vec<String>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path).ok()?.take(MAX_BYTES).read_to_end(&mut bytes).ok()?;
    Some(parse(&bytes))
}

/// The distinct user names of the `USER_PROCESS` records in `bytes`, sorted.
pub fn parse(bytes: &[u8]) -> Vec<String> {
    let mut users: Vec<String> = bytes
        .chunks_exact(RECORD_SIZE)
        .filter(|record| i16::from_ne_bytes([record[0], record[1]]) == USER_PROCESS)
        .filter_map(|record| {
            let field = &record[USER_OFFSET..USER_OFFSET + USER_LENGTH];
            let end = field.iter().position(|b| *b == 0).unwrap_or(USER_LENGTH);
            let name = String::from_utf8_lossy(&field[..end]).trim().to_owned();
            (!name.is_empty()).then_some(name)
        })
        .collect();
    users.sort();
    users.dedup();
    users
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One utmp record as glibc writes it.
    pub fn record(kind: i16, user: &str, line: &str) -> Vec<u8> {
        let mut record = vec![0u8; RECORD_SIZE];
        record[0..2].copy_from_slice(&kind.to_ne_bytes());
        record[4..8].copy_from_slice(&1234i32.to_ne_bytes());
        record[8..8 + line.len()].copy_from_slice(line.as_bytes());
        record[USER_OFFSET..USER_OFFSET + user.len()].copy_from_slice(user.as_bytes());
        record
    }

    #[test]
    fn only_user_processes_count_once_each() {
        let mut file = Vec::new();
        file.extend(record(2, "reboot", "~")); // BOOT_TIME
        file.extend(record(USER_PROCESS, "bob", "pts/1"));
        file.extend(record(USER_PROCESS, "alice", "pts/0"));
        file.extend(record(8, "carol", "pts/2")); // DEAD_PROCESS
        file.extend(record(USER_PROCESS, "bob", "tty1"));
        file.extend(record(USER_PROCESS, &"x".repeat(32), "pts/3")); // a name filling the field
        file.extend(&[7, 0, 0]); // a partial record at the end
        assert_eq!(parse(&file), ["alice", "bob", &"x".repeat(32)]);
    }

    #[test]
    fn a_missing_file_is_none_and_an_empty_one_has_no_users() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(&dir.path().join("absent")), None);
        std::fs::write(dir.path().join("utmp"), record(USER_PROCESS, "dave", "pts/4")).unwrap();
        assert_eq!(read(&dir.path().join("utmp")).unwrap(), ["dave"]);
        assert!(parse(&[]).is_empty());
    }
}
