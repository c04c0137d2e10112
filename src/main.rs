//! The `rtmas` binary: command-line wiring only. The work is done by the
//! `rtmas-scheduler` and `rtmas-jobs` crates.

mod backfills;
mod bench;
mod cli;
mod config;
mod ingest_bench;
mod operations;
mod produce;
mod services;
mod standalone;
mod users;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// RTMAS: real-time log monitoring and alerting, run by an Airflow-style
/// scheduler.
#[derive(Debug, Parser)]
#[command(name = "rtmas", version, about)]
struct Args {
    /// Configuration file [default: rtmas.toml when present].
    #[arg(long, global = true, env = "RTMAS_CONFIG")]
    config: Option<PathBuf>,
    /// Database URL: postgres://… or sqlite:… (overrides DATABASE_URL).
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// The folder of DAG files [default: dags].
    #[arg(long = "dags", global = true)]
    dags_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the scheduler: sync DAGs, start runs, queue ready tasks.
    Scheduler,
    /// Run a worker: take task tries off the queue and run them.
    Worker {
        /// Tries run at once [default: from config, 8].
        #[arg(long)]
        concurrency: Option<usize>,
        /// Worker name [default: HOST-PID].
        #[arg(long)]
        name: Option<String>,
    },
    /// Run the web UI and JSON API.
    Web {
        /// Address to listen on [default: from config, 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<String>,
    },
    /// Users of the web UI and API, their roles and API tokens.
    Users {
        #[command(subcommand)]
        command: users::UsersCommand,
    },
    /// Run the whole system in one process on a SQLite file.
    Standalone {
        /// Folder for the database and other local state.
        #[arg(long, default_value = "rtmas-data")]
        data_dir: PathBuf,
    },
    /// Database administration.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// DAG files and DAGs.
    Dags {
        #[command(subcommand)]
        command: cli::DagsCommand,
    },
    /// DAG runs.
    Runs {
        #[command(subcommand)]
        command: cli::RunsCommand,
    },
    /// Task instances: clear them, mark them.
    Tasks {
        #[command(subcommand)]
        command: operations::TasksCommand,
    },
    /// Pools of slots that cap how many tasks of a kind run at once.
    Pools {
        #[command(subcommand)]
        command: operations::PoolsCommand,
    },
    /// Backfills: list, show and cancel them (create with `dags backfill`).
    Backfills {
        #[command(subcommand)]
        command: backfills::BackfillsCommand,
    },
    /// Send simulated log records, with labelled anomalies, to a Kafka topic.
    Produce(produce::ProduceArgs),
    /// Benchmarks that print their figures.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Create or upgrade the schema.
    Migrate,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match load_config(&args) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: failed to start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args.command, config)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(args: &Args) -> anyhow::Result<Config> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(url) = &args.database_url {
        config.database_url = Some(url.clone());
    }
    if let Some(dir) = &args.dags_dir {
        config.dags_dir = dir.clone();
    }
    if let Some(format) = args.log_format {
        config.log_format = format;
    }
    Ok(config)
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,apalis=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Scheduler => cli::scheduler(&config).await?,
        Command::Worker { concurrency, name } => cli::worker(&config, concurrency, name).await?,
        Command::Web { listen } => {
            let mut config = config;
            if let Some(listen) = listen {
                config.web.listen = listen;
            }
            let store = cli::connect(&config).await?;
            let listener = users::bind(&config).await?;
            let state = rtmas_web::AppState::new(store, config.web_config())?;
            rtmas_web::serve(listener, state, cli::shutdown_signal())
                .await
                .context("web server failed")?;
        }
        Command::Users { command } => return users::command(&config, command).await,
        Command::Standalone { data_dir } => standalone::run(config, &data_dir).await?,
        Command::Db {
            command: DbCommand::Migrate,
        } => {
            let store = cli::connect(&config).await?;
            println!("schema of {} database is up to date", store.backend_name());
        }
        Command::Dags { command } => return cli::dags(&config, command).await,
        Command::Runs { command } => return cli::runs(&config, command).await,
        Command::Tasks { command } => return operations::tasks(&config, command).await,
        Command::Pools { command } => return operations::pools(&config, command).await,
        Command::Backfills { command } => return backfills::command(&config, command).await,
        Command::Produce(args) => produce::run(&config, args).await?,
        Command::Bench { command } => bench::run(&config, command).await?,
    }
    Ok(ExitCode::SUCCESS)
}
