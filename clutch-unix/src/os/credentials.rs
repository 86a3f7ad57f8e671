//! Who a worker runs as: a user and group named (or numbered) on the command line,
//! resolved in the master from the user database, before anything is spawned.
//!
//! The lookups (`getpwnam_r`, `getgrnam_r`, `getgrouplist`) may read files, ask NSS
//! modules, open sockets (LDAP, sssd) and allocate: nothing a forked child may do. So the
//! master resolves everything once, at start, into plain numbers ([`Credentials`]); the
//! child only makes the three raw syscalls that apply them (`os/sys.rs`).
//!
//! The rules, as systemd's `User=` / `Group=` and `initgroups(3)`:
//!
//! - a user is a name, or a number (all digits) taken as a uid;
//! - the group is the user's primary group from the user database unless one is given
//!   (a name or a gid);
//! - the supplementary groups are what `getgrouplist(user, group)` says: every group
//!   that lists the user as a member, and the group itself. A uid with no entry in the
//!   database gets the group alone (and must be given one);
//! - a group without a user keeps the master's uid and drops its supplementary groups.
//!
//! Changing credentials needs privilege: [`Credentials::resolve`] refuses a change that a
//! master not running as root could not make, so the mistake is one line at start, not a
//! failure in every child.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

/// A worker's user, group and supplementary groups, resolved (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    uid: u32,
    gid: u32,
    /// Sorted, without duplicates; the primary group among them.
    groups: Vec<u32>,
    /// The user's name, when it has an entry in the user database.
    user_name: Option<String>,
    /// The user's home directory, from the same entry.
    home: Option<PathBuf>,
}

impl Credentials {
    /// Resolves `user` and `group` (names, or numeric ids) from the user database; see
    /// the module docs for the rules. At least one must be given.
    ///
    /// Fails when a name is unknown, when a uid without an entry comes without a group,
    /// when the lookup itself fails, and when the master could not make the change: a
    /// master not running as root can only "change" to exactly what it already is.
    pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Self, CredentialsError> {
        let credentials = Self::lookup(user, group)?;
        credentials.check_privilege()?;
        Ok(credentials)
    }

    /// [`resolve`](Self::resolve) without the privilege check, for tests of a change
    /// that must fail.
    #[cfg(test)]
    pub(crate) fn lookup_for_tests(
        user: Option<&str>,
        group: Option<&str>,
    ) -> Result<Self, CredentialsError> {
        Self::lookup(user, group)
    }

    /// [`resolve`](Self::resolve) without the privilege check.
    pub(crate) fn lookup(
        user: Option<&str>,
        group: Option<&str>,
    ) -> Result<Self, CredentialsError> {
        let gid = group.map(lookup_group).transpose()?;
        let Some(user) = user else {
            // A group alone: the master's uid, that group and no other.
            let gid = gid.ok_or(CredentialsError::Nothing)?;
            return Ok(Self {
                uid: nix::unistd::geteuid().as_raw(),
                gid,
                groups: vec![gid],
                user_name: None,
                home: None,
            });
        };
        match lookup_user(user)? {
            Found::Entry(entry) => {
                let gid = gid.unwrap_or(entry.gid.as_raw());
                let name = CString::new(entry.name.clone()).map_err(|_| {
                    CredentialsError::UnknownUser {
                        user: user.to_owned(),
                    }
                })?;
                let mut groups: Vec<u32> = nix::unistd::getgrouplist(&name, Gid::from_raw(gid))
                    .map_err(|errno| CredentialsError::Lookup {
                        what: format!("the groups of user {:?}", entry.name),
                        source: errno.into(),
                    })?
                    .into_iter()
                    .map(Gid::as_raw)
                    .collect();
                groups.push(gid);
                groups.sort_unstable();
                groups.dedup();
                Ok(Self {
                    uid: entry.uid.as_raw(),
                    gid,
                    groups,
                    user_name: Some(entry.name),
                    home: Some(entry.dir),
                })
            }
            Found::BareUid(uid) => {
                let gid = gid.ok_or_else(|| CredentialsError::NoPrimaryGroup {
                    user: user.to_owned(),
                })?;
                Ok(Self {
                    uid,
                    gid,
                    groups: vec![gid],
                    user_name: None,
                    home: None,
                })
            }
        }
    }

    /// The change must be one this process can make: any, as root; none otherwise.
    pub(crate) fn check_privilege(&self) -> Result<(), CredentialsError> {
        let euid = nix::unistd::geteuid().as_raw();
        if euid == 0 || self.is_current() {
            return Ok(());
        }
        Err(CredentialsError::NotRoot {
            target: self.describe(),
            euid,
        })
    }

    /// True when this process already has exactly these credentials (its real and
    /// effective ids, and its supplementary groups), so a worker needs no change.
    #[must_use]
    pub fn is_current(&self) -> bool {
        let ids = nix::unistd::getuid().as_raw() == self.uid
            && nix::unistd::geteuid().as_raw() == self.uid
            && nix::unistd::getgid().as_raw() == self.gid
            && nix::unistd::getegid().as_raw() == self.gid;
        ids && nix::unistd::getgroups().is_ok_and(|current| {
            let mut current: Vec<u32> = current.into_iter().map(Gid::as_raw).collect();
            current.push(self.gid);
            current.sort_unstable();
            current.dedup();
            current == self.groups
        })
    }

    /// The user id.
    #[must_use]
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The primary group id.
    #[must_use]
    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// The supplementary groups (sorted; the primary group is among them).
    #[must_use]
    pub fn groups(&self) -> &[u32] {
        &self.groups
    }

    /// The user's name and home directory, when it has an entry in the user database.
    #[must_use]
    pub fn user_entry(&self) -> Option<(&str, &Path)> {
        Some((self.user_name.as_deref()?, self.home.as_deref()?))
    }

    /// `user "nobody" (uid 65534, gid 65534)`, for messages.
    #[must_use]
    pub fn describe(&self) -> String {
        match &self.user_name {
            Some(name) => format!("user {name:?} (uid {}, gid {})", self.uid, self.gid),
            None => format!("uid {}, gid {}", self.uid, self.gid),
        }
    }

    /// Whether a process with these credentials may search (`x`) every directory from
    /// the root down to `dir` and `dir` itself, by the mode bits (ACLs are not read).
    /// Root may search anything.
    #[must_use]
    pub fn can_enter(&self, dir: &Path) -> bool {
        if self.uid == 0 {
            return true;
        }
        let Ok(dir) = dir.canonicalize() else {
            return false;
        };
        dir.ancestors()
            .all(|ancestor| std::fs::metadata(ancestor).is_ok_and(|meta| self.may_execute(&meta)))
    }

    /// Whether a process with these credentials may execute `file`: reach it (see
    /// [`can_enter`](Self::can_enter)) and have an `x` bit of it, by the mode bits.
    #[must_use]
    pub fn can_execute(&self, file: &Path) -> bool {
        if self.uid == 0 {
            return true;
        }
        let Ok(file) = file.canonicalize() else {
            return false;
        };
        file.parent().is_some_and(|dir| self.can_enter(dir))
            && std::fs::metadata(&file).is_ok_and(|meta| self.may_execute(&meta))
    }

    /// The `x` bit that applies to these credentials: the owner's, the group's or the
    /// others'.
    fn may_execute(&self, meta: &std::fs::Metadata) -> bool {
        let mode = meta.mode();
        if meta.uid() == self.uid {
            mode & 0o100 != 0
        } else if self.groups.contains(&meta.gid()) {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        }
    }
}

/// What a user name or number is in the user database.
enum Found {
    Entry(User),
    /// A number with no entry.
    BareUid(u32),
}

/// A uid or gid written as a number. Never `u32::MAX`: to `setresuid` and friends that
/// is `-1`, "leave it as it is", which would quietly keep root's.
fn numeric(text: &str) -> Option<u32> {
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
        .filter(|id| *id != u32::MAX)
}

fn lookup_user(user: &str) -> Result<Found, CredentialsError> {
    let failed = |errno: nix::Error| CredentialsError::Lookup {
        what: format!("user {user:?}"),
        source: errno.into(),
    };
    if let Some(uid) = numeric(user) {
        return Ok(match User::from_uid(Uid::from_raw(uid)).map_err(failed)? {
            Some(entry) => Found::Entry(entry),
            None => Found::BareUid(uid),
        });
    }
    match User::from_name(user).map_err(failed)? {
        Some(entry) => Ok(Found::Entry(entry)),
        None => Err(CredentialsError::UnknownUser {
            user: user.to_owned(),
        }),
    }
}

fn lookup_group(group: &str) -> Result<u32, CredentialsError> {
    if let Some(gid) = numeric(group) {
        return Ok(gid);
    }
    match Group::from_name(group) {
        Ok(Some(entry)) => Ok(entry.gid.as_raw()),
        Ok(None) => Err(CredentialsError::UnknownGroup {
            group: group.to_owned(),
        }),
        Err(errno) => Err(CredentialsError::Lookup {
            what: format!("group {group:?}"),
            source: errno.into(),
        }),
    }
}

/// Why a worker's user or group cannot be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum CredentialsError {
    /// Neither a user nor a group was given.
    Nothing,
    /// No such user name in the user database.
    UnknownUser {
        /// The name given.
        user: String,
    },
    /// No such group name in the group database.
    UnknownGroup {
        /// The name given.
        group: String,
    },
    /// A numeric uid with no entry in the user database, and no group given.
    NoPrimaryGroup {
        /// The uid given.
        user: String,
    },
    /// The user or group database could not be read.
    Lookup {
        /// What was looked up.
        what: String,
        /// Why it failed.
        source: io::Error,
    },
    /// The change needs a master running as root.
    NotRoot {
        /// The credentials asked for.
        target: String,
        /// The master's effective uid.
        euid: u32,
    },
}

impl CredentialsError {
    /// True when the mistake is in what was asked for (an unknown name), not in the
    /// system (a database that cannot be read, a master without the privilege).
    #[must_use]
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Nothing
                | Self::UnknownUser { .. }
                | Self::UnknownGroup { .. }
                | Self::NoPrimaryGroup { .. }
        )
    }
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Nothing => f.write_str("user: neither a user nor a group given"),
            Self::UnknownUser { user } => write!(f, "user: no such user {user:?}"),
            Self::UnknownGroup { group } => write!(f, "group: no such group {group:?}"),
            Self::NoPrimaryGroup { user } => write!(
                f,
                "user: uid {user} has no entry in the user database to take a primary group \
                 from: give the group too"
            ),
            Self::Lookup { what, .. } => write!(f, "cannot look up {what}"),
            Self::NotRoot { target, euid } => write!(
                f,
                "cannot run the workers as {target}: that needs a master running as root, \
                 and this one runs as uid {euid}"
            ),
        }
    }
}

impl std::error::Error for CredentialsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Lookup { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn a_user_gets_its_primary_group_and_its_groups() {
        let root = Credentials::lookup(Some("root"), None).unwrap();
        assert_eq!((root.uid(), root.gid()), (0, 0));
        assert!(root.groups().contains(&0));
        assert_eq!(root.user_entry().map(|(name, _)| name), Some("root"));
        // By number, the same entry.
        assert_eq!(Credentials::lookup(Some("0"), None).unwrap(), root);
    }

    #[test]
    fn a_given_group_replaces_the_primary_one() {
        let creds = Credentials::lookup(Some("root"), Some("12345")).unwrap();
        assert_eq!(creds.gid(), 12345);
        assert!(creds.groups().contains(&12345), "{creds:?}");
        // A group alone: our uid, that group only.
        let creds = Credentials::lookup(None, Some("54321")).unwrap();
        assert_eq!(creds.uid(), nix::unistd::geteuid().as_raw());
        assert_eq!(creds.groups(), [54321]);
    }

    #[test]
    fn unknown_names_are_usage_errors_that_name_them() {
        let error = Credentials::resolve(Some("no-such-user-clutch"), None).unwrap_err();
        assert!(error.is_usage());
        assert_eq!(
            error.to_string(),
            "user: no such user \"no-such-user-clutch\""
        );
        let error = Credentials::resolve(Some("root"), Some("no-such-group-clutch")).unwrap_err();
        assert!(error.is_usage());
        assert_eq!(
            error.to_string(),
            "group: no such group \"no-such-group-clutch\""
        );
        // A uid nobody has, without a group: no primary group to take.
        let error = Credentials::resolve(Some("4000000000"), None).unwrap_err();
        assert!(error.is_usage(), "{error}");
        assert!(error.to_string().contains("4000000000"), "{error}");
        let bare = Credentials::lookup(Some("4000000000"), Some("4000000001")).unwrap();
        assert_eq!(bare.groups(), [4_000_000_001]);
        assert_eq!(bare.user_entry(), None);
    }

    #[test]
    fn only_root_may_change_and_anyone_may_stay_who_they_are() {
        let me = nix::unistd::geteuid().as_raw().to_string();
        let other = if is_root() { "65534" } else { "0" };
        let change = Credentials::lookup(Some(other), Some(other)).unwrap();
        match change.check_privilege() {
            Ok(()) => assert!(is_root()),
            Err(error) => {
                assert!(!is_root());
                assert!(!error.is_usage(), "not the command line's fault");
                assert!(error.to_string().contains("needs a master running as root"));
            }
        }
        // Nothing to change: fine for anyone (when the database knows us).
        if let Ok(same) = Credentials::lookup(Some(&me), None) {
            if same.is_current() {
                same.check_privilege().unwrap();
            }
        }
    }

    #[test]
    fn entering_a_directory_is_judged_by_every_ancestor() {
        let nobody = Credentials::lookup(Some("65534"), Some("65534")).unwrap();
        assert!(nobody.can_enter(Path::new("/tmp")));
        let private = tempfile::tempdir().unwrap();
        let inside = private.path().join("open");
        std::fs::create_dir(&inside).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!nobody.can_enter(&inside), "a 0700 ancestor");
        std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        assert!(nobody.can_enter(&inside));
        assert!(!nobody.can_enter(&private.path().join("missing")));
        let root = Credentials::lookup(Some("0"), Some("0")).unwrap();
        assert!(root.can_enter(Path::new("/no/such")), "root is not judged");
        // A program: reachable, and an x bit for them.
        assert!(nobody.can_execute(Path::new("/bin/sh")));
        let program = inside.join("program");
        std::fs::write(&program, "").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o754)).unwrap();
        assert!(
            !nobody.can_execute(&program),
            "only the owner and group may"
        );
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(nobody.can_execute(&program));
        std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!nobody.can_execute(&program), "behind a 0700 directory");
    }
}
