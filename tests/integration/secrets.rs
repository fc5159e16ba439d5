//! No secret ever reaches a log, an error or a file: `run` and `report` with
//! a password in `PGPASSWORD`, in the URL (its authority or its query), in
//! the Pushgateway's URL and in `AWS_SECRET_ACCESS_KEY`,
//! made to succeed and to fail in every way the other tests provoke, with
//! text and JSON logs at debug level.

use std::path::Path;

use crate::common::{self, Moto, TempDir};
use crate::run::Src;

const SECRET: &str = "Zq7-hunter2-secret";

type Env = Vec<(String, String)>;

fn files_containing(root: &Path, needle: &str) -> Vec<String> {
    common::files_under(root)
        .into_iter()
        .filter(|p| std::fs::read(p).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes())))
        .map(|p| p.display().to_string())
        .collect()
}

#[tokio::test]
async fn secrets_never_reach_logs_errors_or_files() {
    let dir = TempDir::new("secrets");
    let lite = Src::sqlite(&dir);
    lite.seed("2", "400");
    let pg = Src::postgres("secrets").await;
    pg.seed("2", "400");
    // The test server trusts every connection: the password in the URL is
    // sent, accepted and must still appear nowhere.
    let pg_with_password = pg
        .url()
        .replacen("postgres://postgres@", &format!("postgres://postgres:{SECRET}@"), 1);
    // libpq's other spelling: the password as a query parameter.
    let pg_with_query_password = format!(
        "{}{}password={SECRET}",
        pg.url(),
        if pg.url().contains('?') { '&' } else { '?' }
    );
    let closed = common::free_port();
    let moto = Moto::start("secrets");
    let strict = Moto::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let with_secret = |moto: &Moto| -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = moto
            .env()
            .into_iter()
            .map(|(k, v)| {
                if k == "AWS_SECRET_ACCESS_KEY" {
                    (k, SECRET.to_string())
                } else {
                    (k, v)
                }
            })
            .collect();
        env.push(("PGPASSWORD".into(), SECRET.into()));
        env.push(("RUST_LOG".into(), "debug".into()));
        env
    };
    let unreachable_store: Vec<(String, String)> = with_secret(&moto)
        .into_iter()
        .map(|(k, v)| {
            if k == "AWS_ENDPOINT" {
                (k, format!("http://127.0.0.1:{closed}"))
            } else {
                (k, v)
            }
        })
        .collect();
    let local = dir.path().join("wh").display().to_string();
    let refused = format!("postgres://etl:{SECRET}@127.0.0.1:{closed}/ops");
    let unknown_host = format!("postgres://etl:{SECRET}@no-such-host.invalid/ops");
    let bad_scheme = format!("oracle://etl:{SECRET}@db/ops");
    let run = |source: &str, warehouse: &str| -> Vec<String> {
        [
            "run",
            "--source",
            source,
            "--warehouse",
            warehouse,
            "--from",
            "2026-03-06",
            "--to",
            "2026-03-09",
            "--store-max-retries",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let report = |warehouse: &str| -> Vec<String> {
        common::two_day_report(warehouse, &["active_agents"], &["--store-max-retries", "1"])
    };
    let cases: Vec<(&str, Vec<String>, Env)> = vec![
        (
            "run that succeeds on PostgreSQL",
            run(&pg_with_password, &local),
            with_secret(&moto),
        ),
        (
            "run that succeeds on PostgreSQL, the password in the query",
            run(&pg_with_query_password, &local),
            with_secret(&moto),
        ),
        (
            "run that succeeds, its Pushgateway (a password in its URL) unreachable",
            [
                run(lite.url(), &local),
                vec![
                    "--pushgateway-url".into(),
                    format!("http://metrics:{SECRET}@127.0.0.1:{closed}/"),
                ],
            ]
            .concat(),
            with_secret(&moto),
        ),
        (
            "run that succeeds into S3",
            run(lite.url(), "s3://secrets/usage"),
            with_secret(&moto),
        ),
        ("report that succeeds", report(&local), with_secret(&moto)),
        ("refused port", run(&refused, &local), with_secret(&moto)),
        ("unknown host", run(&unknown_host, &local), with_secret(&moto)),
        (
            "unknown host, the password in the query",
            run(
                &format!("postgres://etl@no-such-host.invalid/ops?sslmode=disable&password={SECRET}"),
                &local,
            ),
            with_secret(&moto),
        ),
        ("bad scheme", run(&bad_scheme, &local), with_secret(&moto)),
        (
            "a libpq key=value string, not a URL",
            run(&format!("host=127.0.0.1 user=etl password={SECRET}"), &local),
            with_secret(&moto),
        ),
        (
            "a URL without its scheme",
            run(&format!("etl:{SECRET}@db/ops"), &local),
            with_secret(&moto),
        ),
        (
            "a password with a raw '?': a URL that does not parse",
            run(&format!("postgres://etl:{SECRET}?x@db/ops"), &local),
            with_secret(&moto),
        ),
        (
            "a password of digits and a raw '/': read as a port, the rest as the path",
            run(&format!("postgres://etl:2024/{SECRET}@127.0.0.1:{closed}/ops"), &local),
            with_secret(&moto),
        ),
        (
            "a warehouse URL with a password (refused)",
            run(lite.url(), &format!("s3://key:{SECRET}@secrets/usage")),
            with_secret(&moto),
        ),
        (
            "missing bucket",
            run(lite.url(), "s3://absent/usage"),
            with_secret(&moto),
        ),
        (
            "refused credentials",
            run(lite.url(), "s3://locked/usage"),
            with_secret(&strict),
        ),
        (
            "unreachable store",
            run(lite.url(), "s3://secrets/usage"),
            unreachable_store.clone(),
        ),
        (
            "report, missing bucket",
            report("s3://absent/usage"),
            with_secret(&moto),
        ),
        (
            "report, refused credentials",
            report("s3://locked/usage"),
            with_secret(&strict),
        ),
        (
            "report, unreachable store",
            report("s3://secrets/usage"),
            unreachable_store,
        ),
        (
            "missing SQLite file",
            run(&format!("sqlite://{}/none.db", dir.path().display()), &local),
            with_secret(&moto),
        ),
    ];
    for format in ["text", "json"] {
        for (what, args, env) in &cases {
            let mut argv = vec!["--log-format", format];
            argv.extend(args.iter().map(String::as_str));
            let out = common::run_bin_env(&argv, env);
            for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
                let text = String::from_utf8_lossy(bytes);
                assert!(
                    !text.contains(SECRET),
                    "{what} ({format} logs): the secret is in {stream}:\n{text}"
                );
            }
            // Each case did what it is meant to: the successes succeed.
            assert_eq!(
                out.status.success(),
                what.contains("succeed"),
                "{what}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert!(
        files_containing(dir.path(), SECRET).is_empty(),
        "{:?}",
        files_containing(dir.path(), SECRET)
    );
    let s3 = crate::wh::open("s3://secrets/usage", &moto.options());
    for key in s3.list("").await.unwrap() {
        let bytes = s3.get(&key).await.unwrap().unwrap();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "the secret is in {key}"
        );
    }
}
