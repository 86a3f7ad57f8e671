//! Listening sockets: parsing addresses, binding them, and adopting them from a service
//! manager.
//!
//! The master binds every listener once ([`bind`]) — or adopts the ones systemd socket
//! activation passed it ([`listen_fds_from_env`]) — and hands them to each worker at fds
//! 3.. (see [`crate::os::spawn`]); the kernel then spreads connections over the workers. A
//! worker adopts them with the very same [`listen_fds_from_env`] and turns them into std
//! listeners with [`Listener::into_std`].
//!
//! Listeners are left in blocking mode. `O_NONBLOCK` belongs to the open file, which all
//! workers share: a worker that wants non-blocking accepts (every async runtime does) sets
//! it itself, for all of them.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rustix::net::{self as rn, AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

/// The longest path a unix socket address holds (`sun_path` is 108 bytes, NUL included).
pub const UNIX_PATH_MAX: usize = 107;

/// The name of a listener nobody named, as `sd_listen_fds_with_names` reports it.
pub const UNNAMED: &str = "unknown";

/// Where to listen: parsed from the command line or configuration by [`ListenAddr::parse`].
///
/// Non-exhaustive: other kinds of socket (abstract unix names, vsock) may come.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ListenAddr {
    /// A TCP address, IPv4 or IPv6 (port 0: the kernel picks one).
    Tcp(SocketAddr),
    /// A unix stream socket at a path (relative paths are relative to the working
    /// directory at bind time).
    Unix(PathBuf),
}

impl ListenAddr {
    /// Parses one of:
    ///
    /// | input | meaning |
    /// |---|---|
    /// | `127.0.0.1:5000` | an IPv4 address and port |
    /// | `[::1]:5000` | an IPv6 address (in brackets) and port |
    /// | `localhost:5000` | `127.0.0.1:5000` (no name lookup: only `localhost` is known) |
    /// | `:5000` | every IPv4 interface, `0.0.0.0:5000` |
    /// | `unix:/run/app.sock` | a unix socket path (absolute or relative) |
    ///
    /// Port 0 asks the kernel for a free port. Total: never panics, whatever the input.
    pub fn parse(input: &str) -> Result<Self, AddrError> {
        let error = |reason| AddrError {
            input: input.to_string(),
            reason,
        };
        if input.is_empty() {
            return Err(error("empty address"));
        }
        if let Some(path) = input.strip_prefix("unix:") {
            return match path {
                "" => Err(error("unix: needs a path, as in unix:/run/app.sock")),
                _ if path.starts_with('@') => Err(error("abstract unix sockets are not supported")),
                _ if path.contains('\0') => Err(error("the path contains a NUL byte")),
                _ if path.len() > UNIX_PATH_MAX => Err(error(
                    "the path is longer than 107 bytes, the limit of a unix socket",
                )),
                _ => Ok(Self::Unix(PathBuf::from(path))),
            };
        }
        if input.starts_with('[') {
            return SocketAddrV6::from_str(input)
                .map(|v6| Self::Tcp(SocketAddr::V6(v6)))
                .map_err(|_| error("expected [IPV6]:PORT, as in [::1]:5000"));
        }
        let Some((host, port)) = input.rsplit_once(':') else {
            return Err(error(
                "no port: expected HOST:PORT, [IPV6]:PORT or unix:PATH",
            ));
        };
        let port =
            parse_port(port).ok_or_else(|| error("the port must be a number from 0 to 65535"))?;
        let ip = if host.is_empty() {
            Ipv4Addr::UNSPECIFIED
        } else if host.eq_ignore_ascii_case("localhost") {
            Ipv4Addr::LOCALHOST
        } else if let Ok(ip) = Ipv4Addr::from_str(host) {
            ip
        } else if host.contains(':') {
            return Err(error("an IPv6 address needs brackets, as in [::1]:5000"));
        } else {
            return Err(error(
                "not an IP address (host names other than localhost are not looked up)",
            ));
        };
        Ok(Self::Tcp(SocketAddr::new(IpAddr::V4(ip), port)))
    }
}

/// ASCII digits only (no sign), at most 5 of them, fitting a `u16`.
fn parse_port(port: &str) -> Option<u16> {
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    port.parse().ok()
}

impl FromStr for ListenAddr {
    type Err = AddrError;

    fn from_str(input: &str) -> Result<Self, AddrError> {
        Self::parse(input)
    }
}

/// Writes a form that [`ListenAddr::parse`] reads back as the same address
/// (`localhost:80` comes back as `127.0.0.1:80`).
impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => addr.fmt(f),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A listen address that does not parse: the input, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrError {
    input: String,
    reason: &'static str,
}

impl AddrError {
    /// What is wrong with the input.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid listen address {:?}: {}",
            self.input, self.reason
        )
    }
}

impl std::error::Error for AddrError {}

/// How to bind.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenOptions {
    /// The accept queue length (default 1024). The kernel silently caps it at
    /// `net.core.somaxconn` (4096 by default since Linux 5.4, 128 before): raise that
    /// sysctl for a longer queue.
    pub backlog: u32,
    /// For unix sockets: the permissions of the socket file (as in `0o660`); `None` leaves
    /// what the umask gives.
    pub unix_mode: Option<u32>,
}

impl Default for ListenOptions {
    fn default() -> Self {
        Self {
            backlog: 1024,
            unix_mode: None,
        }
    }
}

/// What a listener is bound to.
///
/// Non-exhaustive, as [`ListenAddr`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LocalAddr {
    /// A TCP address, with the real port when port 0 was asked for.
    Tcp(SocketAddr),
    /// A unix socket: its path, or `None` for an abstract or unnamed socket (which a
    /// service manager may pass).
    Unix(Option<PathBuf>),
}

impl fmt::Display for LocalAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => addr.fmt(f),
            Self::Unix(Some(path)) => write!(f, "unix:{}", path.display()),
            Self::Unix(None) => f.write_str("unix:(unnamed)"),
        }
    }
}

/// A listening stream socket, close-on-exec, with a name (for `LISTEN_FDNAMES`).
///
/// A unix socket that [`bind`] created removes its socket file when dropped (see
/// [`bind`]); one adopted from a service manager or a master leaves it alone.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    name: String,
    local: LocalAddr,
    file: Option<SocketFile>,
}

/// A unix socket file this process created by binding it, removed when dropped: every
/// exit path of a master that returns (a clean stop, the crash breaker, an error, a
/// startup failure after some sockets were bound) unwinds through it. Removed only if
/// the path still names that very socket (same device and inode), so a file someone put
/// there since (after removing ours) is left alone.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// The socket file just bound at `path`.
    fn of(path: &Path) -> io::Result<Self> {
        let metadata = std::fs::symlink_metadata(path)?;
        Ok(Self {
            path: path.to_owned(),
            dev: metadata.dev(),
            ino: metadata.ino(),
        })
    }

    /// Gives up the file: it stays when this is dropped.
    pub(crate) fn keep(self) {
        std::mem::forget(self);
    }

    /// The socket file at `path` as it is now, removed when dropped (if it is still that
    /// file): for a socket adopted from the master that created it, once this process
    /// is the one to clean up.
    pub(crate) fn adopted(path: &Path) -> io::Result<Self> {
        Self::of(path)
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(metadata) if metadata.dev() == self.dev && metadata.ino() == self.ino => {
                match std::fs::remove_file(&self.path) {
                    Err(error) if error.kind() != io::ErrorKind::NotFound => tracing::warn!(
                        path = %self.path.display(),
                        %error,
                        "cannot remove the socket file"
                    ),
                    _ => {}
                }
            }
            // Gone, or replaced by someone else's file: not ours to remove.
            _ => {}
        }
    }
}

/// A [`Listener`] as the std type of its family.
///
/// Non-exhaustive, as [`ListenAddr`].
#[derive(Debug)]
#[non_exhaustive]
pub enum StdListener {
    /// A TCP listener.
    Tcp(std::net::TcpListener),
    /// A unix stream listener.
    Unix(std::os::unix::net::UnixListener),
}

impl Listener {
    /// The name: the one given with [`Listener::with_name`] or by the service manager,
    /// else [`UNNAMED`].
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames it (a name for `LISTEN_FDNAMES`: 1 to 255 printable ASCII characters other
    /// than `:`, checked when it is passed to a worker).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// What it is bound to.
    #[must_use]
    pub fn local_addr(&self) -> &LocalAddr {
        &self.local
    }

    /// True for a TCP listener (false: a unix stream socket).
    #[must_use]
    pub fn is_tcp(&self) -> bool {
        matches!(self.local, LocalAddr::Tcp(_))
    }

    /// The TCP port it is bound to (the real one when port 0 was asked for).
    #[must_use]
    pub fn local_port(&self) -> Option<u16> {
        match self.local {
            LocalAddr::Tcp(addr) => Some(addr.port()),
            LocalAddr::Unix(_) => None,
        }
    }

    /// The std listener of its family, for a worker to accept on. A unix socket file
    /// [`bind`] created is handed over with it: it then stays after the listener is
    /// closed, as with any std listener.
    #[must_use]
    pub fn into_std(self) -> StdListener {
        let (listener, file) = self.into_std_and_file();
        if let Some(file) = file {
            file.keep();
        }
        listener
    }

    /// Hands the socket file over: it stays when this listener is dropped (an upgrade's
    /// new master uses it now).
    pub(crate) fn keep_file(&mut self) {
        if let Some(file) = self.file.take() {
            file.keep();
        }
    }

    /// The std listener, and the socket file to remove when done with it (if [`bind`]
    /// created one).
    pub(crate) fn into_std_and_file(self) -> (StdListener, Option<SocketFile>) {
        let listener = match self.local {
            LocalAddr::Tcp(_) => StdListener::Tcp(self.fd.into()),
            LocalAddr::Unix(_) => StdListener::Unix(self.fd.into()),
        };
        (listener, self.file)
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The socket file, if [`bind`] created one, is handed over with the fd (it stays).
impl From<Listener> for OwnedFd {
    fn from(listener: Listener) -> OwnedFd {
        if let Some(file) = listener.file {
            file.keep();
        }
        listener.fd
    }
}

/// Binding failed: the address, and why.
#[derive(Debug)]
pub struct BindError {
    addr: ListenAddr,
    source: io::Error,
}

impl BindError {
    /// The address that could not be bound.
    #[must_use]
    pub fn addr(&self) -> &ListenAddr {
        &self.addr
    }

    /// The underlying error (`AddrInUse`, `PermissionDenied`, `AddrNotAvailable`...).
    #[must_use]
    pub fn io_error(&self) -> &io::Error {
        &self.source
    }

    fn hint(&self) -> Option<&'static str> {
        match (self.source.kind(), &self.addr) {
            (io::ErrorKind::PermissionDenied, ListenAddr::Tcp(addr)) if addr.port() < 1024 => {
                Some("ports below 1024 need root or CAP_NET_BIND_SERVICE")
            }
            (io::ErrorKind::AddrNotAvailable, _) => Some("no local interface has this address"),
            _ => None,
        }
    }
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The OS error is the source, the next link of the chain: not repeated here.
        write!(f, "cannot listen on {}", self.addr)?;
        if let Some(hint) = self.hint() {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Binds and listens on `addr`.
///
/// TCP sockets get `SO_REUSEADDR` (a restarted master can bind while old connections are
/// in `TIME_WAIT`), and IPv6 ones `IPV6_V6ONLY` (`[::]:80` means IPv6 only; listen on
/// `0.0.0.0:80` too for both). A unix socket path left behind by a dead process (a socket
/// that refuses connections) is replaced; a live one, or a path that is not a socket, is
/// an error. The socket file is removed when the [`Listener`] is dropped (if the path
/// still names this socket), so a master leaves none behind on any exit path it returns
/// through; [`Listener::into_std`] hands the file over with the socket.
pub fn bind(addr: &ListenAddr, options: &ListenOptions) -> Result<Listener, BindError> {
    let backlog = i32::try_from(options.backlog).unwrap_or(i32::MAX);
    let bound = match addr {
        ListenAddr::Tcp(socket_addr) => bind_tcp(*socket_addr, backlog),
        ListenAddr::Unix(path) => bind_unix(path, backlog, options.unix_mode),
    };
    bound
        .map(|(fd, local, file)| Listener {
            fd,
            name: UNNAMED.to_string(),
            local,
            file,
        })
        .map_err(|source| BindError {
            addr: addr.clone(),
            source,
        })
}

type Bound = (OwnedFd, LocalAddr, Option<SocketFile>);

fn bind_tcp(addr: SocketAddr, backlog: i32) -> io::Result<Bound> {
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let socket = rn::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    rn::sockopt::set_socket_reuseaddr(&socket, true)?;
    if addr.is_ipv6() {
        rn::sockopt::set_ipv6_v6only(&socket, true)?;
    }
    rn::bind(&socket, &addr)?;
    rn::listen(&socket, backlog)?;
    let local = local_tcp(&socket)?;
    Ok((socket, LocalAddr::Tcp(local), None))
}

fn local_tcp(socket: &OwnedFd) -> io::Result<SocketAddr> {
    SocketAddr::try_from(rn::getsockname(socket)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket"))
}

fn bind_unix(path: &Path, backlog: i32, mode: Option<u32>) -> io::Result<Bound> {
    remove_stale_socket(path)?;
    let address = SocketAddrUnix::new(path)?;
    let socket = rn::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    rn::bind(&socket, &address)?;
    // From here on, a failure removes the file it leaves.
    let file = SocketFile::of(path)?;
    // Before listen, so nobody can connect while the mode is still the umask's.
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|error| {
            io::Error::new(error.kind(), format!("cannot set mode {mode:o}: {error}"))
        })?;
    }
    rn::listen(&socket, backlog)?;
    Ok((
        socket,
        LocalAddr::Unix(Some(path.to_path_buf())),
        Some(file),
    ))
}

/// Removes `path` if it is a socket nobody listens on; fails if it is anything else.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let metadata = match std::fs::symlink_metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    if !metadata.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket",
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "address in use: another process listens on this socket",
        )),
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
            match std::fs::remove_file(path) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
                _ => Ok(()),
            }
        }
        Err(error) => Err(error),
    }
}

/// Adopts the listening sockets a service manager passed to this process, as
/// `sd_listen_fds_with_names` does: when `LISTEN_PID` is our pid, the `LISTEN_FDS` fds from
/// 3 on, named by `LISTEN_FDNAMES` (else [`UNNAMED`]), each made close-on-exec. Returns
/// an empty list when the variables are absent or meant for another process.
///
/// Afterwards the three variables are removed from the environment, so that children do
/// not misread them. Call it once, at startup, before any thread is spawned: changing
/// the environment races with other threads reading it (`std::env::remove_var` is
/// `unsafe` from edition 2024 on for this reason). Every fd must be a listening stream
/// socket (TCP or unix), else this fails, naming the fd.
pub fn listen_fds_from_env() -> io::Result<Vec<Listener>> {
    const VARS: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];
    let [pid, fds, names] = VARS.map(std::env::var_os);
    let present = pid.is_some() || fds.is_some();
    let names = parse_listen_env(
        pid.as_deref(),
        fds.as_deref(),
        names.as_deref(),
        std::process::id(),
    );
    if present {
        for var in VARS {
            std::env::remove_var(var);
        }
    }
    let Some(names) = names? else {
        return Ok(Vec::new());
    };
    let fds = crate::os::sys::take_listen_fds(names.len())?;
    fds.into_iter()
        .zip(names)
        .zip(3..)
        .map(|((fd, name), number)| {
            let local = classify(&fd).map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("LISTEN_FDS fd {number} ({name:?}): {error}"),
                )
            })?;
            Ok(Listener {
                fd,
                name,
                local,
                file: None,
            })
        })
        .collect()
}

/// What a passed fd is, if it is a listening stream socket.
fn classify(fd: &OwnedFd) -> io::Result<LocalAddr> {
    let not_listening =
        || io::Error::new(io::ErrorKind::InvalidInput, "not a listening stream socket");
    let stream = rn::sockopt::socket_type(fd).map_err(|_| not_listening())? == SocketType::STREAM;
    if !stream || !rn::sockopt::socket_acceptconn(fd)? {
        return Err(not_listening());
    }
    let domain = rn::sockopt::socket_domain(fd)?;
    if domain == AddressFamily::UNIX {
        let address = rn::getsockname(fd)?;
        let path = SocketAddrUnix::try_from(address).ok().and_then(|unix| {
            unix.path_bytes()
                .map(|bytes| PathBuf::from(OsStr::from_bytes(bytes)))
        });
        Ok(LocalAddr::Unix(path))
    } else if domain == AddressFamily::INET || domain == AddressFamily::INET6 {
        Ok(LocalAddr::Tcp(local_tcp(fd)?))
    } else {
        Err(not_listening())
    }
}

/// The pure half of [`listen_fds_from_env`]: the names of the passed fds (their count is
/// `LISTEN_FDS`), or `None` when nothing was passed to process `our_pid`.
fn parse_listen_env(
    pid: Option<&OsStr>,
    fds: Option<&OsStr>,
    names: Option<&OsStr>,
    our_pid: u32,
) -> io::Result<Option<Vec<String>>> {
    let invalid = |what: &str, value: &OsStr| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid {what}={value:?}"),
        )
    };
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(None);
    };
    let listen_pid: u32 = number(pid).ok_or_else(|| invalid("LISTEN_PID", pid))?;
    if listen_pid != our_pid {
        return Ok(None);
    }
    let count: usize = number(fds).ok_or_else(|| invalid("LISTEN_FDS", fds))?;
    let names: Vec<String> = match names {
        None => vec![UNNAMED.to_string(); count],
        Some(names) => {
            let names = names
                .to_str()
                .ok_or_else(|| invalid("LISTEN_FDNAMES", names))?;
            let names: Vec<String> = if count == 0 && names.is_empty() {
                Vec::new()
            } else {
                names.split(':').map(str::to_string).collect()
            };
            if names.len() != count {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "LISTEN_FDNAMES has {} names for LISTEN_FDS={count}",
                        names.len()
                    ),
                ));
            }
            names
        }
    };
    Ok(Some(names))
}

fn number<T: FromStr>(value: &OsStr) -> Option<T> {
    let value = value.to_str()?;
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use clutch_proto::ExitStatus;

    use super::*;
    use crate::os::spawn::SpawnSpec;
    use crate::testutil::{expect_helper, helper, Reaper};

    fn tcp(s: &str) -> ListenAddr {
        ListenAddr::Tcp(s.parse().unwrap())
    }

    #[test]
    fn parses_the_documented_forms() {
        let cases = [
            ("127.0.0.1:5000", tcp("127.0.0.1:5000")),
            ("0.0.0.0:80", tcp("0.0.0.0:80")),
            ("[::1]:5000", tcp("[::1]:5000")),
            ("[::]:0", tcp("[::]:0")),
            ("localhost:5000", tcp("127.0.0.1:5000")),
            ("LocalHost:1", tcp("127.0.0.1:1")),
            (":5000", tcp("0.0.0.0:5000")),
            ("127.0.0.1:0", tcp("127.0.0.1:0")),
            ("127.0.0.1:65535", tcp("127.0.0.1:65535")),
            (
                "unix:/run/app.sock",
                ListenAddr::Unix("/run/app.sock".into()),
            ),
            ("unix:app.sock", ListenAddr::Unix("app.sock".into())),
        ];
        for (input, expected) in cases {
            assert_eq!(ListenAddr::parse(input), Ok(expected), "{input}");
        }
        assert_eq!(tcp("[::1]:5000").to_string(), "[::1]:5000");
        assert_eq!(ListenAddr::Unix("/a b".into()).to_string(), "unix:/a b");
    }

    #[test]
    fn refuses_everything_else_clearly() {
        let cases = [
            ("", "empty address"),
            ("5000", "no port"),
            ("127.0.0.1", "no port"),
            ("127.0.0.1:", "port"),
            ("127.0.0.1:65536", "port"),
            ("127.0.0.1:-1", "port"),
            ("127.0.0.1:+80", "port"),
            ("127.0.0.1:8o", "port"),
            ("example.com:80", "not an IP address"),
            ("256.0.0.1:80", "not an IP address"),
            ("::1:5000", "brackets"),
            ("[::1]", "[IPV6]:PORT"),
            ("[::1]:", "[IPV6]:PORT"),
            ("[127.0.0.1]:80", "[IPV6]:PORT"),
            ("unix:", "needs a path"),
            ("unix:@abstract", "abstract"),
            ("unix:/a\0b", "NUL"),
        ];
        for (input, reason) in cases {
            let error = ListenAddr::parse(input).unwrap_err();
            assert!(error.reason().contains(reason), "{input:?}: {error}");
            assert!(
                error.to_string().starts_with("invalid listen address"),
                "{error}"
            );
        }
        let long = format!("unix:/{}", "x".repeat(UNIX_PATH_MAX));
        assert!(ListenAddr::parse(&long)
            .unwrap_err()
            .reason()
            .contains("107"));
        assert!(ListenAddr::parse(&long[..long.len() - 1]).is_ok());
    }

    /// A small deterministic fuzz: every short string over the characters that matter,
    /// and many longer ones. Parsing never panics, and what parses prints back to itself.
    #[test]
    fn parse_is_total_and_display_round_trips() {
        let alphabet: Vec<char> = "0123456789.:[]%/@ unixlocahstf-\u{e9}".chars().collect();
        let check = |input: &str| crate::fuzz::listen_addr(input.as_bytes());
        let mut input = String::new();
        for a in &alphabet {
            for b in &alphabet {
                for c in &alphabet {
                    input.clear();
                    input.extend([*a, *b, *c]);
                    check(&input);
                }
            }
        }
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            input.clear();
            for _ in 0..(state % 24) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                input.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            check(&input);
            check(&format!("unix:{input}"));
            check(&format!("[{input}]:80"));
        }
    }

    fn is_cloexec(fd: impl AsFd) -> bool {
        rustix::io::fcntl_getfd(fd)
            .unwrap()
            .contains(rustix::io::FdFlags::CLOEXEC)
    }

    #[test]
    fn binds_tcp_with_the_real_port_and_accepts() {
        let listener = bind(&tcp("127.0.0.1:0"), &ListenOptions::default()).unwrap();
        assert!(is_cloexec(&listener));
        assert_eq!(listener.name(), UNNAMED);
        let LocalAddr::Tcp(local) = listener.local_addr().clone() else {
            panic!()
        };
        assert_ne!(local.port(), 0);
        assert!(rn::sockopt::socket_reuseaddr(&listener).unwrap());

        let StdListener::Tcp(std_listener) = listener.into_std() else {
            panic!("not TCP")
        };
        let mut client = std::net::TcpStream::connect(local).unwrap();
        let (mut server, _) = std_listener.accept().unwrap();
        client.write_all(b"hi").unwrap();
        let mut buffer = [0; 2];
        server.read_exact(&mut buffer).unwrap();
        assert_eq!(&buffer, b"hi");
    }

    #[test]
    fn binds_ipv6_only() {
        match bind(&tcp("[::1]:0"), &ListenOptions::default()) {
            Ok(listener) => assert!(rn::sockopt::ipv6_v6only(&listener).unwrap()),
            // A machine (or container) without IPv6 loopback.
            Err(error) => assert_eq!(error.io_error().kind(), io::ErrorKind::AddrNotAvailable),
        }
    }

    #[test]
    fn tcp_errors_name_the_address_and_the_cause() {
        let first = bind(&tcp("127.0.0.1:0"), &ListenOptions::default()).unwrap();
        let LocalAddr::Tcp(taken) = first.local_addr().clone() else {
            panic!()
        };
        let error = bind(&ListenAddr::Tcp(taken), &ListenOptions::default()).unwrap_err();
        assert_eq!(error.io_error().kind(), io::ErrorKind::AddrInUse);
        assert_eq!(
            crate::error::Chain(&error).to_string(),
            format!("cannot listen on {taken}: Address already in use (os error 98)")
        );

        // TEST-NET-1: no interface of ours has it.
        let error = bind(&tcp("192.0.2.1:0"), &ListenOptions::default()).unwrap_err();
        assert_eq!(error.io_error().kind(), io::ErrorKind::AddrNotAvailable);
        assert!(
            error
                .to_string()
                .ends_with("(no local interface has this address)"),
            "{error}"
        );
        assert_eq!(
            crate::error::Chain(&error).to_string(),
            "cannot listen on 192.0.2.1:0 (no local interface has this address): Cannot \
             assign requested address (os error 99)"
        );
    }

    #[test]
    fn unix_sockets_replace_stale_files_but_not_live_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sock");
        let addr = ListenAddr::Unix(path.clone());
        let options = ListenOptions {
            unix_mode: Some(0o600),
            ..ListenOptions::default()
        };

        let first = bind(&addr, &options).unwrap();
        assert!(is_cloexec(&first));
        assert_eq!(first.local_addr(), &LocalAddr::Unix(Some(path.clone())));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let error = bind(&addr, &options).unwrap_err();
        assert_eq!(error.io_error().kind(), io::ErrorKind::AddrInUse);
        assert!(
            crate::error::Chain(&error)
                .to_string()
                .contains("another process listens"),
            "{error}"
        );

        // The refused bind left the live socket's file alone.
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());

        // A master that died without unwinding (SIGKILL) leaves the file, and nobody
        // listens on it: stale. (Handing the fd over keeps the file; closing it is the
        // death.)
        drop(OwnedFd::from(first));
        assert!(path.exists());
        let second = bind(&addr, &ListenOptions::default()).unwrap();
        let StdListener::Unix(std_listener) = second.into_std() else {
            panic!("not unix")
        };
        let _client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        std_listener.accept().unwrap();

        let file = dir.path().join("file");
        std::fs::write(&file, "data").unwrap();
        let error = bind(&ListenAddr::Unix(file.clone()), &options).unwrap_err();
        assert_eq!(
            crate::error::Chain(&error).to_string(),
            format!(
                "cannot listen on unix:{}: the path exists and is not a socket",
                file.display()
            )
        );
        assert_eq!(std::fs::read(&file).unwrap(), b"data");
    }

    #[test]
    fn a_dropped_listener_removes_its_socket_file_only_if_it_is_still_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sock");
        let addr = ListenAddr::Unix(path.clone());

        drop(bind(&addr, &ListenOptions::default()).unwrap());
        assert!(!path.exists(), "the socket file outlived its listener");

        // Someone removed ours and bound their own at the path: theirs stays.
        let ours = bind(&addr, &ListenOptions::default()).unwrap();
        std::fs::remove_file(&path).unwrap();
        let theirs = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(ours);
        assert!(path.exists(), "another socket's file was removed");
        drop(theirs);
        std::fs::remove_file(&path).unwrap();

        // into_std hands the file over: it stays, as with any std listener.
        let StdListener::Unix(std_listener) =
            bind(&addr, &ListenOptions::default()).unwrap().into_std()
        else {
            panic!("not unix")
        };
        drop(std_listener);
        assert!(path.exists());

        // Adopted listeners (a service manager's, the master's in a worker) own no file.
        let tcp = bind(&tcp("127.0.0.1:0"), &ListenOptions::default()).unwrap();
        assert!(tcp.file.is_none());
    }

    #[test]
    fn the_listen_environment_follows_sd_listen_fds() {
        let os = |s: &'static str| Some(OsStr::new(s));
        let names = |pid, fds, names| parse_listen_env(pid, fds, names, 42);
        assert_eq!(names(None, None, None).unwrap(), None);
        assert_eq!(names(os("42"), None, None).unwrap(), None);
        assert_eq!(
            names(os("41"), os("2"), None).unwrap(),
            None,
            "another process's"
        );
        assert_eq!(names(os("42"), os("0"), None).unwrap(), Some(vec![]));
        assert_eq!(names(os("42"), os("0"), os("")).unwrap(), Some(vec![]));
        assert_eq!(
            names(os("42"), os("2"), None).unwrap(),
            Some(vec![UNNAMED.to_string(), UNNAMED.to_string()])
        );
        assert_eq!(
            names(os("42"), os("2"), os("http:admin")).unwrap(),
            Some(vec!["http".to_string(), "admin".to_string()])
        );
        for (pid, fds, fdnames) in [
            (os("x"), os("1"), None),
            (os("42"), os("-1"), None),
            (os("42"), os(""), None),
            (os("42"), os("2"), os("one")),
            (os("42"), os("1"), os("a:b")),
        ] {
            let error = names(pid, fds, fdnames).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        }
    }

    const HELPER: &str = concat!(module_path!(), "::helper_adopt");

    /// End to end: the master binds, spawn passes the sockets at 3.. with LISTEN_*, and the
    /// worker adopts them. The worker is this test binary, run as a helper.
    #[test]
    fn a_worker_adopts_what_spawn_passes() {
        let dir = tempfile::tempdir().unwrap();
        let http = bind(&tcp("127.0.0.1:0"), &ListenOptions::default()).unwrap();
        let admin = bind(
            &ListenAddr::Unix(dir.path().join("admin.sock")),
            &ListenOptions::default(),
        )
        .unwrap();
        let expected = format!("http={}\nadmin={}", http.local_addr(), admin.local_addr());
        let child = helper(HELPER)
            .listener("http", http.as_fd())
            .listener("admin", admin.as_fd())
            .env([("CLUTCH_TEST_EXPECT", expected)])
            .spawn()
            .unwrap();
        assert_eq!(Reaper::new(child).wait().unwrap(), ExitStatus::Code(0));
    }

    #[test]
    #[ignore = "helper process, run by a_worker_adopts_what_spawn_passes"]
    fn helper_adopt() {
        expect_helper(HELPER);
        let listeners = listen_fds_from_env().unwrap();
        let seen: Vec<String> = listeners
            .iter()
            .map(|l| format!("{}={}", l.name(), l.local_addr()))
            .collect();
        assert_eq!(
            seen.join("\n"),
            std::env::var("CLUTCH_TEST_EXPECT").unwrap()
        );
        assert!(listeners.iter().all(is_cloexec));
        for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            assert_eq!(std::env::var_os(var), None, "{var} is still set");
        }
        assert!(listen_fds_from_env().unwrap().is_empty());
        let mut listeners = listeners.into_iter();
        assert!(matches!(
            listeners.next().unwrap().into_std(),
            StdListener::Tcp(_)
        ));
        assert!(matches!(
            listeners.next().unwrap().into_std(),
            StdListener::Unix(_)
        ));
    }

    /// A passed fd that is not a listening socket is refused, by number and name.
    #[test]
    fn a_worker_refuses_what_is_not_a_listener() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let child = helper(HELPER_REFUSE)
            .listener("odd", file.as_fd())
            .spawn()
            .unwrap();
        assert_eq!(Reaper::new(child).wait().unwrap(), ExitStatus::Code(0));
    }

    const HELPER_REFUSE: &str = concat!(module_path!(), "::helper_refuse");

    #[test]
    #[ignore = "helper process, run by a_worker_refuses_what_is_not_a_listener"]
    fn helper_refuse() {
        expect_helper(HELPER_REFUSE);
        let error = listen_fds_from_env().unwrap_err();
        assert_eq!(
            error.to_string(),
            "LISTEN_FDS fd 3 (\"odd\"): not a listening stream socket"
        );
    }

    #[test]
    fn spawn_spec_is_usable_with_listeners() {
        // Listener implements AsFd, so it plugs into SpawnSpec directly.
        let listener = bind(&tcp("127.0.0.1:0"), &ListenOptions::default()).unwrap();
        let _spec = SpawnSpec::new("/bin/true").listener(listener.name(), listener.as_fd());
    }
}
