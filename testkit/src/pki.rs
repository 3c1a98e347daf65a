//! A certificate authority of a test's own, made with the `openssl` command: a CA,
//! a server certificate for `127.0.0.1`/`localhost` and a client certificate, all
//! PEM files in a directory removed on drop. For TLS tests of Redis and RabbitMQ.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files of a test PKI.
pub struct TestPki {
    dir: PathBuf,
}

impl TestPki {
    /// Make a CA, and a server and a client certificate signed by it, each with a
    /// 2048-bit RSA key, valid for 30 days.
    ///
    /// # Panics
    /// When `openssl` is missing or fails.
    pub fn new() -> TestPki {
        let dir = std::env::temp_dir().join(format!(
            "sftest-pki-{}-{}",
            std::process::id(),
            crate::unique_name("p")
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let pki = TestPki { dir };
        pki.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=scanfleet test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        for (name, ext) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            let key = format!("{name}.key");
            let csr = format!("{name}.csr");
            let pem = format!("{name}.pem");
            let extfile = format!("{name}.ext");
            std::fs::write(pki.dir.join(&extfile), ext).unwrap();
            pki.openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN=scanfleet test {name}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ]);
            pki.openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "30",
                "-extfile",
                &extfile,
                "-out",
                &pem,
            ]);
        }
        // Servers that drop privileges still read their keys.
        for f in ["server.key", "client.key"] {
            use std::os::unix::fs::PermissionsExt;
            let _ =
                std::fs::set_permissions(pki.dir.join(f), std::fs::Permissions::from_mode(0o644));
        }
        pki
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("run openssl (Debian package openssl): {e}"));
        assert!(
            out.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The directory holding every file.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file of the PKI: `ca.pem`, `server.pem`, `server.key`, `client.pem`, `client.key`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
