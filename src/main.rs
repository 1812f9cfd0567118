mod packager;
fn main() {
    for p in std::env::args().skip(1) {
        let f = std::fs::File::open(&p).unwrap();
        match packager::mp4::read_index(&f) {
            Ok(ix) => {
                let d = |t: &packager::index::Track| format!("id{} ts{} n{} sync{:?} shift{} delay{} pts0={} end={} {:?}", t.track_id, t.timescale, t.samples.len(), t.sync.as_ref().map(|s| s.len()), t.presentation_shift, t.decode_delay, t.pts_90k(0), t.end_pts_90k(), match &t.codec { packager::index::Codec::Video(v) => v.codec_string.clone(), packager::index::Codec::Audio(a) => format!("{} {:?} {}Hz", a.codec_string, a.codec, a.sample_rate) });
                println!("{p}: V[{}] A[{}] skipped {:?}", ix.video.as_ref().map(d).unwrap_or_default(), ix.audio.as_ref().map(d).unwrap_or_default(), ix.skipped);
            }
            Err(e) => println!("{p}: ERROR {e}"),
        }
    }
}
