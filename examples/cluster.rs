//! A whole cluster through the library API: three embedded auth nodes on ephemeral ports behind one
//! proxy, from inline TOML. Run with `cargo run --example cluster`, stop with Ctrl-C.

use tokio_util::sync::CancellationToken;

const CONFIG: &str = r#"
[proxy]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[[pool]]
name = "am"
  [[pool.backend]]
  id = "01"
  url = "http://127.0.0.1:0"
  embedded = true
  [[pool.backend]]
  id = "02"
  url = "http://127.0.0.1:0"
  embedded = true
  [[pool.backend]]
  id = "03"
  url = "http://127.0.0.1:0"
  role = "passive"
  embedded = true

[[route]]
path_prefix = "/am/"
pool = "am"

[auth]
  [[auth.chain]]
  name = "ldapService"
  modules = ["DataStore"]
  [[auth.user]]
  username = "demo"
  # demo-Passw0rd
  password = "$argon2id$v=19$m=19456,t=2,p=1$YLJo/4hSi44d9oDB0Y+TvQ$U1fRWk0i19CXXrd1WgNjBYy2KA0UKgxyFPnq14LEX1w"
"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let config = tether::config::parse(CONFIG)?;
    let shutdown = CancellationToken::new();
    let running = tether::start(config, shutdown.clone()).await?;
    println!("proxy  http://{}", running.listen);
    println!("admin  http://{}/readyz", running.admin);
    for node in &running.nodes {
        println!("node {} http://{}", node.node.id(), node.addr);
    }
    println!(
        "try:   curl -X POST -H 'X-OpenAM-Username: demo' -H 'X-OpenAM-Password: demo-Passw0rd' \
         http://{}/am/json/realms/root/authenticate",
        running.listen
    );
    tokio::signal::ctrl_c().await?;
    shutdown.cancel();
    running.wait().await;
    Ok(())
}
