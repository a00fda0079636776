//! Process titles: what `ps` and `top` show for each process of the cluster (`hello: master`,
//! `hello: worker 2`, `hello: cache manager`), as gunicorn and puma do, so that operators can
//! tell the processes of one binary apart.
//!
//! A process is shown in two ways: by its command line (`/proc/PID/cmdline`: `ps -f`, `top -c`),
//! whose first word is its argv\[0\], and by its name (`/proc/PID/comm`: `top`, `ps -e`), 15
//! bytes at most, which `exec` resets to the program's file name.
//!
//! - A child gets its title as argv\[0\] from the master, which starts it (`master::spawn`), and
//!   names itself when it starts.
//! - The master cannot change its own argv\[0\] in place: that means writing over the memory the
//!   kernel set aside for the arguments, which std also reads whenever anything asks for
//!   `std::env::args`, and moving the environment to make room, as setproctitle does. It
//!   executes itself again instead, once, before it has done anything (same pid, arguments and
//!   environment; the title as argv\[0\]), and then names itself.
//!
//! Nothing in cluster2 reads argv\[0\]: children find the program through `/proc/self/exe`, and
//! options come from the arguments after it.

use std::ffi::{CString, OsStr, OsString};

use crate::role::ProcessRole;

/// The longest name Linux keeps for a process (`comm`), in bytes.
const NAME_MAX: usize = 15;

/// The title of a process of this program in `role`.
pub(crate) fn of(role: ProcessRole) -> String {
    let program = program();
    match role {
        ProcessRole::Master => format!("{program}: master"),
        ProcessRole::Worker(id) => format!("{program}: worker {id}"),
        ProcessRole::CacheManager => format!("{program}: cache manager"),
    }
}

/// The program's file name, as the kernel has it: what `ps` showed before the title.
fn program() -> String {
    let exe = std::env::current_exe().ok();
    let name = exe
        .as_deref()
        .and_then(|path| path.file_name())
        .map(OsStr::to_string_lossy)
        .unwrap_or_default();
    // The file was replaced or removed since this process started (a deploy).
    let name = name.trim_end_matches(" (deleted)");
    if name.is_empty() {
        "cluster2".to_owned()
    } else {
        name.to_owned()
    }
}

/// Names this process (its main thread, whose name is the process's) after `title`, cut to
/// what Linux keeps. Threads started later take their own names (`cluster2-worker`).
pub(crate) fn set_name(title: &str) {
    let mut end = title.len().min(NAME_MAX);
    while !title.is_char_boundary(end) {
        end -= 1;
    }
    if let Ok(name) = CString::new(&title[..end]) {
        // Only what `top` shows is lost if this fails.
        let _ = nix::sys::prctl::set_name(&name);
    }
}

/// Gives the master its title: executes this program again with the title as argv\[0\] unless
/// it has it already, then names the process. On success the new image starts `main` over,
/// reaches this point again, and returns `Ok`; an error is the failed exec, after which the
/// master runs on untitled.
pub(crate) fn master() -> std::io::Result<()> {
    let title = of(ProcessRole::Master);
    set_name(&title);
    let mut args = std::env::args_os();
    if args.next().as_deref() == Some(OsStr::new(&title)) {
        return Ok(());
    }
    use std::os::unix::process::CommandExt as _;
    // `/proc/self/exe` is the very file this process runs, even if its path was replaced since;
    // the new image's exe is then that file's path, as before.
    Err(std::process::Command::new("/proc/self/exe")
        .arg0(OsString::from(&title))
        .args(args)
        .exec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_name_the_program_and_the_role() {
        let program = program();
        assert!(!program.is_empty() && !program.contains('/'), "{program}");
        assert_eq!(of(ProcessRole::Master), format!("{program}: master"));
        assert_eq!(of(ProcessRole::Worker(2)), format!("{program}: worker 2"));
        assert_eq!(
            of(ProcessRole::CacheManager),
            format!("{program}: cache manager")
        );
    }
}
