//! `chordal ca init` and `chordal ca issue`: the cluster's certificates
//! (chordal-tls does the work).

use anyhow::{Context, Result};
use chordal_tls::Role;
use clap::Subcommand;
use std::path::PathBuf;

/// The cluster CA.
#[derive(Subcommand)]
pub enum CaCommand {
    /// Make a new cluster CA: DIR/ca.crt and DIR/ca.key (0600). Refuses to
    /// overwrite one.
    Init {
        /// Directory for the CA (created if missing).
        #[arg(long)]
        dir: PathBuf,
    },
    /// Sign a new certificate with the CA in DIR: OUT/ca.crt, OUT/node.crt
    /// and OUT/node.key (0600). Prints the node id it gives and its role, as JSON.
    Issue {
        /// Directory of the CA (from `ca init`).
        #[arg(long)]
        dir: PathBuf,
        /// Directory for the new certificate (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// member (joins the ring) or client (store and messaging only).
        #[arg(long, default_value = "member")]
        role: Role,
        /// A DNS name or IP address the certificate is also valid for (may
        /// be given several times).
        #[arg(long)]
        san: Vec<String>,
        /// Days the certificate is valid (short-lived certificates are how
        /// a ring revokes: see docs/security.md).
        #[arg(long, default_value_t = chordal_tls::CERT_DAYS)]
        days: u32,
        /// Sign the key already in OUT again (same node id, new validity)
        /// instead of making a new one.
        #[arg(long)]
        renew: bool,
    },
}

/// Runs a `ca` subcommand.
pub fn run(cmd: CaCommand) -> Result<()> {
    match cmd {
        CaCommand::Init { dir } => {
            let files = chordal_tls::init(&dir)
                .with_context(|| format!("cannot make a CA in {}", dir.display()))?;
            let line = serde_json::json!({
                "ca_cert": files.cert.display().to_string(),
                "ca_key": files.key.display().to_string(),
            });
            println!("{line}");
        }
        CaCommand::Issue {
            dir,
            out,
            role,
            san,
            days,
            renew,
        } => {
            if days == 0 {
                anyhow::bail!("--days must be at least 1");
            }
            let mut options = chordal_tls::IssueOptions::days(days);
            options.renew = renew;
            let issued = chordal_tls::issue_with(&dir, &out, role, &san, &options)
                .with_context(|| format!("cannot issue a certificate into {}", out.display()))?;
            let line = serde_json::json!({
                "id": issued.id.to_hex(),
                "role": issued.role.as_str(),
                "dir": issued.dir.display().to_string(),
            });
            println!("{line}");
        }
    }
    Ok(())
}
