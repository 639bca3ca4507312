//! `mint-token USER`: a buyer's bearer token for a gateway whose
//! `DROPLINE_JWT_SECRET` is the one in this process's environment (HS256,
//! valid for six hours), printed on one line. For trying the API by hand
//! (`just token ana`); real buyers get theirs from an identity provider.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(user), None) = (args.next(), args.next()) else {
        eprintln!("usage: mint-token USER (with DROPLINE_JWT_SECRET set)");
        return ExitCode::FAILURE;
    };
    if let Err(refused) = dropline_core::UserId::parse(user.clone()) {
        eprintln!("mint-token: {refused}");
        return ExitCode::FAILURE;
    }
    let Ok(secret) = std::env::var("DROPLINE_JWT_SECRET") else {
        eprintln!("mint-token: set DROPLINE_JWT_SECRET to the gateway's secret");
        return ExitCode::FAILURE;
    };
    match dropline_testkit::BuyerTokens::with_secret(&secret) {
        Ok(tokens) => {
            println!("{}", tokens.mint(&user));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("mint-token: {err:#}");
            ExitCode::FAILURE
        }
    }
}
