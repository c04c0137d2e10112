pub async fn run(_c: &crate::config::Config, _b: BenchCommand) -> anyhow::Result<()> {
    Ok(())
}
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    Scheduler,
}
