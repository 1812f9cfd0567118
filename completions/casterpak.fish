# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_casterpak_global_optspecs
    string join \n v/verbose config= root= cache-dir= h/help V/version
end

function __fish_casterpak_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_casterpak_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_casterpak_using_subcommand
    set -l cmd (__fish_casterpak_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c casterpak -n "__fish_casterpak_needs_command" -l config -d 'Configuration file (default: ./casterpak.toml, then /etc/casterpak/casterpak.toml)' -r -F
complete -c casterpak -n "__fish_casterpak_needs_command" -l root -d 'Media root directory (media.root)' -r -F
complete -c casterpak -n "__fish_casterpak_needs_command" -l cache-dir -d 'Cache directory (cache.dir)' -r -F
complete -c casterpak -n "__fish_casterpak_needs_command" -s v -l verbose -d 'More log detail on stderr (same as RUST_LOG=casterpak=debug)'
complete -c casterpak -n "__fish_casterpak_needs_command" -s h -l help -d 'Print help'
complete -c casterpak -n "__fish_casterpak_needs_command" -s V -l version -d 'Print version'
complete -c casterpak -n "__fish_casterpak_needs_command" -f -a "package" -d 'Package MP4 files into a static HLS directory (master, playlists, segments)'
complete -c casterpak -n "__fish_casterpak_needs_command" -f -a "serve" -d 'Serve HLS on demand from MP4 files under the media root, through the cache'
complete -c casterpak -n "__fish_casterpak_needs_command" -f -a "gc" -d 'Delete cached objects past their TTL or over the size cap, and orphans'
complete -c casterpak -n "__fish_casterpak_needs_command" -f -a "stat" -d 'Show what the cache holds'
complete -c casterpak -n "__fish_casterpak_needs_command" -f -a "invalidate" -d 'Expire (or delete) cached objects by source, age or all'
complete -c casterpak -n "__fish_casterpak_needs_command" -f -a "master" -d 'Print the master playlist serve would answer for a file or csmil path'
complete -c casterpak -n "__fish_casterpak_needs_command" -f -a "token" -d 'Print a signed-URL token that serve accepts (tokens.key) for a path'
complete -c casterpak -n "__fish_casterpak_needs_command" -f -a "completions" -d 'Print a shell completion script (the files in completions/ are made so)'
complete -c casterpak -n "__fish_casterpak_needs_command" -f -a "man" -d 'Print a man page: casterpak(1), or casterpak-SUBCOMMAND(1) (the files in man/ are made so)'
complete -c casterpak -n "__fish_casterpak_using_subcommand package" -s o -l out -d 'Directory to create with a static package; without it, the serve cache is filled instead' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand package" -l segment-duration -d 'Target segment duration in seconds, segments start at keyframes (default: media.segment_duration, 6)' -r
complete -c casterpak -n "__fish_casterpak_using_subcommand package" -s j -l jobs -d 'Segments made in parallel (default: CPUs, at most 4)' -r
complete -c casterpak -n "__fish_casterpak_using_subcommand package" -l format -d 'What to make: MPEG-TS HLS, CMAF (fMP4 HLS and a DASH MPD), or both (with --out, CMAF in DIR/cmaf)' -r -f -a "ts\t''
cmaf\t''
both\t''"
complete -c casterpak -n "__fish_casterpak_using_subcommand package" -l config -d 'Configuration file (default: ./casterpak.toml, then /etc/casterpak/casterpak.toml)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand package" -l root -d 'Media root directory (media.root)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand package" -l cache-dir -d 'Cache directory (cache.dir)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand package" -l force -d 'Replace DIR if it already exists'
complete -c casterpak -n "__fish_casterpak_using_subcommand package" -l json -d 'Print a JSON summary on stdout'
complete -c casterpak -n "__fish_casterpak_using_subcommand package" -s v -l verbose -d 'More log detail on stderr (same as RUST_LOG=casterpak=debug)'
complete -c casterpak -n "__fish_casterpak_using_subcommand package" -s h -l help -d 'Print help'
complete -c casterpak -n "__fish_casterpak_using_subcommand serve" -l listen -d 'Address and port to listen on (server.listen); port 0 picks a free one' -r
complete -c casterpak -n "__fish_casterpak_using_subcommand serve" -l workers -d 'Requests answered at the same time (server.workers)' -r
complete -c casterpak -n "__fish_casterpak_using_subcommand serve" -l config -d 'Configuration file (default: ./casterpak.toml, then /etc/casterpak/casterpak.toml)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand serve" -l root -d 'Media root directory (media.root)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand serve" -l cache-dir -d 'Cache directory (cache.dir)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand serve" -s v -l verbose -d 'More log detail on stderr (same as RUST_LOG=casterpak=debug)'
complete -c casterpak -n "__fish_casterpak_using_subcommand serve" -s h -l help -d 'Print help'
complete -c casterpak -n "__fish_casterpak_using_subcommand gc" -l config -d 'Configuration file (default: ./casterpak.toml, then /etc/casterpak/casterpak.toml)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand gc" -l root -d 'Media root directory (media.root)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand gc" -l cache-dir -d 'Cache directory (cache.dir)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand gc" -l dry-run -d 'List what would be deleted and count orphans; delete nothing'
complete -c casterpak -n "__fish_casterpak_using_subcommand gc" -l json -d 'Print a JSON report on stdout (counts and bytes by reason)'
complete -c casterpak -n "__fish_casterpak_using_subcommand gc" -s v -l verbose -d 'More log detail on stderr (same as RUST_LOG=casterpak=debug)'
complete -c casterpak -n "__fish_casterpak_using_subcommand gc" -s h -l help -d 'Print help'
complete -c casterpak -n "__fish_casterpak_using_subcommand stat" -l config -d 'Configuration file (default: ./casterpak.toml, then /etc/casterpak/casterpak.toml)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand stat" -l root -d 'Media root directory (media.root)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand stat" -l cache-dir -d 'Cache directory (cache.dir)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand stat" -l json -d 'Print JSON on stdout'
complete -c casterpak -n "__fish_casterpak_using_subcommand stat" -s v -l verbose -d 'More log detail on stderr (same as RUST_LOG=casterpak=debug)'
complete -c casterpak -n "__fish_casterpak_using_subcommand stat" -s h -l help -d 'Print help'
complete -c casterpak -n "__fish_casterpak_using_subcommand invalidate" -l older-than -d 'Only objects made longer ago than this (`90s`, `30m`, `12h`, `3d`)' -r
complete -c casterpak -n "__fish_casterpak_using_subcommand invalidate" -l config -d 'Configuration file (default: ./casterpak.toml, then /etc/casterpak/casterpak.toml)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand invalidate" -l root -d 'Media root directory (media.root)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand invalidate" -l cache-dir -d 'Cache directory (cache.dir)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand invalidate" -l all -d 'Every object'
complete -c casterpak -n "__fish_casterpak_using_subcommand invalidate" -l hard -d 'Delete now instead of marking expired'
complete -c casterpak -n "__fish_casterpak_using_subcommand invalidate" -l json -d 'Print a JSON report on stdout'
complete -c casterpak -n "__fish_casterpak_using_subcommand invalidate" -s v -l verbose -d 'More log detail on stderr (same as RUST_LOG=casterpak=debug)'
complete -c casterpak -n "__fish_casterpak_using_subcommand invalidate" -s h -l help -d 'Print help'
complete -c casterpak -n "__fish_casterpak_using_subcommand master" -l config -d 'Configuration file (default: ./casterpak.toml, then /etc/casterpak/casterpak.toml)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand master" -l root -d 'Media root directory (media.root)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand master" -l cache-dir -d 'Cache directory (cache.dir)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand master" -s v -l verbose -d 'More log detail on stderr (same as RUST_LOG=casterpak=debug)'
complete -c casterpak -n "__fish_casterpak_using_subcommand master" -s h -l help -d 'Print help'
complete -c casterpak -n "__fish_casterpak_using_subcommand token" -l ttl -d 'How long the token is good for: 90s, 30m, 12h, 3d, or seconds' -r
complete -c casterpak -n "__fish_casterpak_using_subcommand token" -l acl -d 'Path patterns the token is good for, `!`-separated, `*` any run of characters (e.g. `/i/films/a.mp4/*`); default: PATH itself' -r
complete -c casterpak -n "__fish_casterpak_using_subcommand token" -l ip -d 'The only client address the token is good for' -r
complete -c casterpak -n "__fish_casterpak_using_subcommand token" -l data -d 'Signed data: `&`-separated `name=value` pairs the request\'s query may then use, e.g. `preroll=0` (with `preroll.param_signed`)' -r
complete -c casterpak -n "__fish_casterpak_using_subcommand token" -l config -d 'Configuration file (default: ./casterpak.toml, then /etc/casterpak/casterpak.toml)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand token" -l root -d 'Media root directory (media.root)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand token" -l cache-dir -d 'Cache directory (cache.dir)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand token" -s v -l verbose -d 'More log detail on stderr (same as RUST_LOG=casterpak=debug)'
complete -c casterpak -n "__fish_casterpak_using_subcommand token" -s h -l help -d 'Print help'
complete -c casterpak -n "__fish_casterpak_using_subcommand completions" -l config -d 'Configuration file (default: ./casterpak.toml, then /etc/casterpak/casterpak.toml)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand completions" -l root -d 'Media root directory (media.root)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand completions" -l cache-dir -d 'Cache directory (cache.dir)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand completions" -s v -l verbose -d 'More log detail on stderr (same as RUST_LOG=casterpak=debug)'
complete -c casterpak -n "__fish_casterpak_using_subcommand completions" -s h -l help -d 'Print help'
complete -c casterpak -n "__fish_casterpak_using_subcommand man" -l config -d 'Configuration file (default: ./casterpak.toml, then /etc/casterpak/casterpak.toml)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand man" -l root -d 'Media root directory (media.root)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand man" -l cache-dir -d 'Cache directory (cache.dir)' -r -F
complete -c casterpak -n "__fish_casterpak_using_subcommand man" -s v -l verbose -d 'More log detail on stderr (same as RUST_LOG=casterpak=debug)'
complete -c casterpak -n "__fish_casterpak_using_subcommand man" -s h -l help -d 'Print help'
