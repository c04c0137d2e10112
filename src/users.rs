//! `rtmas users …`: the people who sign in to the web UI and API, their
//! roles and their API tokens; and `rtmas web`, the server itself.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use clap::Subcommand;
use rtmas_scheduler::store::{Role, Store};
use rtmas_web::auth::{hash_password, new_secret, secret_hash};

use crate::cli::connect;
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user; prints a generated password unless one is given.
    Create {
        /// The name they sign in with.
        username: String,
        /// What they may do: viewer (look), operator (also trigger,
        /// backfill, clear, mark, pause) or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a user's password; prints a generated one unless one is given.
    SetPassword {
        /// The user.
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a user's role.
    SetRole {
        /// The user.
        username: String,
        /// viewer, operator or admin.
        #[arg(value_parser = parse_role)]
        role: Role,
    },
    /// Make an API token for a user and print it (it is shown only once).
    Token {
        /// The user the token acts as.
        username: String,
        /// What the token is for, e.g. `ci`.
        #[arg(long)]
        name: String,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse::<Role>()
        .map_err(|_| format!("unknown role `{text}`: expected viewer, operator or admin"))
}

/// The password to set: read from standard input, or generated.
fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if !from_stdin {
        return Ok((new_secret()[..20].to_owned(), true));
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("failed to read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(
        password.chars().count() >= 8,
        "the password must have at least 8 characters"
    );
    Ok((password, false))
}

pub async fn command(config: &Config, command: UsersCommand) -> anyhow::Result<ExitCode> {
    let store = connect(config).await?;
    match command {
        UsersCommand::Create {
            username,
            role,
            password_stdin,
        } => {
            anyhow::ensure!(
                !username.trim().is_empty() && username.len() <= 100,
                "a username has 1 to 100 characters"
            );
            let (password, generated) = password(password_stdin)?;
            store
                .create_user(
                    username.trim(),
                    &hash_password(&password)?,
                    role,
                    Utc::now(),
                )
                .await?;
            println!("created {role} {username}");
            if generated {
                println!("password: {password}");
            }
        }
        UsersCommand::List { json } => {
            let users = store.list_users().await?;
            if json {
                println!("{}", serde_json::to_string(&users)?);
            } else {
                println!("{:<24} {:<9} {:<9} CREATED", "USER", "ROLE", "DISABLED");
                for user in &users {
                    println!(
                        "{:<24} {:<9} {:<9} {}",
                        user.username,
                        user.role,
                        user.disabled,
                        user.created_at.to_rfc3339()
                    );
                }
            }
        }
        UsersCommand::SetPassword {
            username,
            password_stdin,
        } => {
            let (password, generated) = password(password_stdin)?;
            store
                .set_password(&username, &hash_password(&password)?)
                .await?;
            println!("password of {username} changed");
            if generated {
                println!("password: {password}");
            }
        }
        UsersCommand::SetRole { username, role } => {
            store.set_role(&username, role).await?;
            println!("{username} is now {role}");
        }
        UsersCommand::Token { username, name } => {
            let user = store
                .user_by_name(&username)
                .await?
                .with_context(|| format!("no user {username}"))?;
            let secret = new_secret();
            store
                .create_api_token(user.id, &name, &secret_hash(&secret), Utc::now())
                .await?;
            println!("{secret}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates the first admin when nobody can sign in yet, and prints its
/// password once: how standalone mode gives a newcomer a way in.
pub async fn ensure_first_admin(store: &Store) -> anyhow::Result<()> {
    if store.count_users().await? > 0 {
        return Ok(());
    }
    let password = new_secret()[..20].to_owned();
    store
        .create_user("admin", &hash_password(&password)?, Role::Admin, Utc::now())
        .await?;
    println!(
        "created the first user: admin, password {password}\n\
         (shown only this once; change it with `rtmas users set-password admin`)"
    );
    Ok(())
}

/// Binds the web server's address.
pub async fn bind(config: &Config) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(&config.web.listen)
        .await
        .with_context(|| format!("failed to listen on {}", config.web.listen))
}
