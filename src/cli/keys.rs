//! `hfconnect keys new`: an application key, shown once, and the config
//! lines holding its hash.

use clap::Args;

use super::{Exit, Io, EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK};

#[derive(Debug, Args)]
pub(crate) struct KeysNewArgs {
    /// The application the key is for.
    #[arg(long)]
    app: String,
}

pub(crate) fn new(args: &KeysNewArgs, io: &mut Io<'_>) -> Exit {
    if args.app.trim().is_empty() {
        let _ = writeln!(io.err, "error: `--app` is empty");
        return EXIT_BAD_INPUT;
    }
    match crate::keys::new_key() {
        Ok((key, hash)) => {
            let _ = writeln!(io.out, "{key}");
            let _ = writeln!(
                io.err,
                "the key above is shown once: give it to application `{}`, which sends it as `Authorization: Bearer <key>`.\n\
                 add its hash to the application in the config:\n\n[[applications]]\nname = \"{}\"\nkeys = [\"{hash}\"]\n",
                args.app, args.app
            );
            EXIT_OK
        }
        Err(e) => {
            let _ = writeln!(io.err, "error: {e}");
            EXIT_FAILURE
        }
    }
}
