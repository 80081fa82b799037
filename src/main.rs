fn main() -> std::process::ExitCode {
    shoal_node::cli::main_with(shoal_sim::cli::main)
}
