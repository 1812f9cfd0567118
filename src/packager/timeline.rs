//! Decode times of a track's samples, kept as the `stts` table keeps them:
//! runs of samples of one duration. Two hours of constant-rate video and
//! audio are two runs, where a time a sample took 8 bytes each (a third of
//! the index); a track whose durations change with almost every sample
//! (variable frame rate) keeps one time a sample instead, never more.

/// Samples a block of [`Timeline::blocks`] spans: 4096.
const BLOCK_SHIFT: u32 = 12;

/// Decode times of a track's samples, in the track's timescale.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    times: Times,
    /// Samples on the timeline.
    len: usize,
    /// Decode time just after the last sample (its time plus its duration).
    end: i64,
    /// With runs: the run that sample `k << BLOCK_SHIFT` is in, for each
    /// `k` so far, so that finding a sample's run looks at the few runs of
    /// its block only. Kept by [`Timeline::compact`]; samples past it are
    /// found by a search of all the runs.
    blocks: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Times {
    /// Ascending by first sample, the first run's at sample 0.
    Runs(Vec<Run>),
    /// One time a sample.
    Each(Vec<i64>),
}

impl Default for Times {
    fn default() -> Self {
        Times::Runs(Vec::new())
    }
}

/// Samples `first..` (up to the next run's first) decoded `duration` apart
/// from `dts` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub first: u32,
    pub duration: u32,
    pub dts: i64,
}

/// See [`Timeline::iter_from`].
#[derive(Clone)]
pub struct Iter<'t> {
    timeline: &'t Timeline,
    /// The sample whose time comes next, and the samples there are.
    next: usize,
    len: usize,
    /// Where the times of the run being walked stop following from its
    /// first by additions of `step`; `dts` is the next sample's. One
    /// sample each where the timeline keeps one time a sample.
    run_end: usize,
    dts: i64,
    step: i64,
}

impl Iter<'_> {
    /// Enters the run (or the kept time) of sample `i`.
    #[cold]
    fn enter(&mut self, i: usize) {
        let t = self.timeline;
        match &t.times {
            Times::Each(times) => {
                (self.dts, self.step, self.run_end) = (times[i], 0, i + 1);
            }
            Times::Runs(runs) => {
                let k = if runs.len() == 1 {
                    0
                } else {
                    t.run_of(runs, i)
                };
                let r = &runs[k];
                self.dts = r.dts + (i - r.first as usize) as i64 * i64::from(r.duration);
                self.step = i64::from(r.duration);
                self.run_end = runs.get(k + 1).map_or(usize::MAX, |n| n.first as usize);
            }
        }
    }
}

impl Iterator for Iter<'_> {
    type Item = i64;

    #[inline]
    fn next(&mut self) -> Option<i64> {
        let i = self.next;
        if i >= self.len {
            return None;
        }
        self.next += 1;
        if i >= self.run_end {
            self.enter(i);
        }
        let dts = self.dts;
        // Past the run's last sample it is not used (and may not fit).
        self.dts = self.dts.wrapping_add(self.step);
        Some(dts)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.len - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// A timeline that would not fit in `i64` decode times.
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow;

impl Timeline {
    /// An empty timeline whose first sample is decoded at `start`.
    pub fn starting_at(start: i64) -> Timeline {
        Timeline {
            end: start,
            ..Timeline::default()
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Decode time just after the last sample.
    #[inline]
    pub fn end(&self) -> i64 {
        self.end
    }

    /// Decode time of sample `i` (below [`Timeline::len`]).
    #[inline(always)]
    pub fn dts(&self, i: usize) -> i64 {
        debug_assert!(i < self.len, "sample {i} of {}", self.len);
        match &self.times {
            Times::Each(times) => times[i],
            Times::Runs(runs) => {
                let run = match runs.as_slice() {
                    [only] => only,
                    _ => &runs[self.run_of(runs, i)],
                };
                run.dts + (i - run.first as usize) as i64 * i64::from(run.duration)
            }
        }
    }

    /// Which of `runs` (more than one) sample `i` is in.
    #[inline(never)]
    fn run_of(&self, runs: &[Run], i: usize) -> usize {
        let block = i >> BLOCK_SHIFT;
        let (from, to) = match self.blocks.get(block) {
            Some(&from) => {
                let to = self
                    .blocks
                    .get(block + 1)
                    .map_or(runs.len(), |&k| k as usize + 1);
                (from as usize, to)
            }
            None => (0, runs.len()),
        };
        from + runs[from..to].partition_point(|r| r.first as usize <= i) - 1
    }

    /// How long sample `i` lasts: until the next one's decode time (or the
    /// end, for the last).
    #[inline]
    pub fn duration(&self, i: usize) -> i64 {
        let next = if i + 1 < self.len {
            self.dts(i + 1)
        } else {
            self.end
        };
        next - self.dts(i)
    }

    /// Decode times of every sample, in order, an addition each.
    pub fn iter(&self) -> Iter<'_> {
        self.iter_from(0)
    }

    /// Decode times of the samples from `first` on, in order.
    pub fn iter_from(&self, first: usize) -> Iter<'_> {
        Iter {
            timeline: self,
            next: first,
            len: self.len,
            run_end: first,
            dts: 0,
            step: 0,
        }
    }

    /// The first place the decode time goes back, from one sample to the
    /// next: the two times.
    pub fn first_step_back(&self) -> Option<(i64, i64)> {
        match &self.times {
            Times::Each(times) => times.windows(2).find(|w| w[1] < w[0]).map(|w| (w[0], w[1])),
            // Within a run times only go forward: only where one starts.
            Times::Runs(runs) => runs.iter().skip(1).find_map(|r| {
                let before = self.dts(r.first as usize - 1);
                (r.dts < before).then_some((before, r.dts))
            }),
        }
    }

    /// Appends `count` samples of `duration` each, decoded from the end on.
    pub fn push(&mut self, count: u32, duration: u32) -> Result<(), Overflow> {
        if count == 0 {
            return Ok(());
        }
        let first = u32::try_from(self.len).map_err(|_| Overflow)?;
        let span = i64::from(count) * i64::from(duration);
        let end = self.end.checked_add(span).ok_or(Overflow)?;
        let start = self.end;
        match &mut self.times {
            Times::Each(times) => {
                times.extend((0..i64::from(count)).map(|k| start + k * i64::from(duration)));
            }
            Times::Runs(runs) => {
                // A run goes on while the time of its next sample is the end.
                let continues = runs.last().is_some_and(|r| {
                    r.duration == duration
                        && r.dts + i64::from(first - r.first) * i64::from(duration) == start
                });
                if !continues {
                    runs.push(Run {
                        first,
                        duration,
                        dts: start,
                    });
                }
            }
        }
        self.len = self.len.checked_add(count as usize).ok_or(Overflow)?;
        self.end = end;
        Ok(())
    }

    /// Moves the end, the time the next sample pushed is decoded at (a
    /// fragment's `tfdt`).
    pub fn jump_to(&mut self, dts: i64) {
        self.end = dts;
    }

    /// Keeps the first `len` samples; the end becomes the time of the
    /// first one dropped.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        self.end = self.dts(len);
        self.len = len;
        match &mut self.times {
            Times::Each(times) => times.truncate(len),
            Times::Runs(runs) => runs.retain(|r| (r.first as usize) < len),
        }
        // Blocks past the end would name runs no longer there.
        self.blocks.truncate(len.div_ceil(1 << BLOCK_SHIFT));
    }

    /// Keeps one time a sample where that takes less memory than the runs
    /// (16 bytes each, 8 a time); once a timeline is complete.
    pub fn compact(&mut self) {
        if let Times::Runs(runs) = &mut self.times {
            if runs.len() * 2 > self.len {
                let each = self.iter().collect();
                self.times = Times::Each(each);
                self.blocks = Vec::new();
            } else {
                runs.shrink_to_fit();
                let mut run = 0;
                self.blocks = (0..self.len.div_ceil(1 << BLOCK_SHIFT))
                    .map(|block| {
                        let first = block << BLOCK_SHIFT;
                        while runs.get(run + 1).is_some_and(|r| r.first as usize <= first) {
                            run += 1;
                        }
                        run as u32
                    })
                    .collect();
            }
        }
    }

    /// The runs, one a sample where the timeline keeps times (see
    /// [`Timeline::compact`]); for [`Timeline::from_runs`].
    pub fn runs(&self) -> Vec<Run> {
        match &self.times {
            Times::Runs(runs) => runs.clone(),
            Times::Each(times) => {
                let mut runs: Vec<Run> = Vec::with_capacity(times.len());
                for (i, &dts) in times.iter().enumerate() {
                    let next = times.get(i + 1).copied().unwrap_or(self.end);
                    runs.push(Run {
                        first: i as u32,
                        duration: u32::try_from(next - dts).unwrap_or(0),
                        dts,
                    });
                }
                runs
            }
        }
    }

    /// The timeline of `len` samples in `runs` (ascending by first sample,
    /// the first at 0), ending at `end`; `None` when they are not that.
    pub fn from_runs(runs: Vec<Run>, len: usize, end: i64) -> Option<Timeline> {
        let ascending = runs.windows(2).all(|w| w[0].first < w[1].first);
        let in_range = runs.last().is_none_or(|r| (r.first as usize) < len);
        if !ascending || !in_range || runs.first().is_some_and(|r| r.first != 0) {
            return None;
        }
        if len > 0 && runs.is_empty() {
            return None;
        }
        // Every time must be an i64: the last sample of each run is the
        // largest of the run.
        for (k, r) in runs.iter().enumerate() {
            let last = runs.get(k + 1).map_or(len, |n| n.first as usize) - 1;
            let steps = (last - r.first as usize) as i64;
            steps
                .checked_mul(i64::from(r.duration))
                .and_then(|span| r.dts.checked_add(span))?;
        }
        let mut timeline = Timeline {
            times: Times::Runs(runs),
            len,
            end,
            blocks: Vec::new(),
        };
        timeline.compact();
        Some(timeline)
    }

    /// Bytes of memory the timeline takes.
    pub fn memory_bytes(&self) -> usize {
        match &self.times {
            Times::Runs(runs) => runs.len() * size_of::<Run>() + self.blocks.len() * 4,
            Times::Each(times) => times.len() * size_of::<i64>(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(t: &Timeline) -> Vec<i64> {
        (0..t.len()).map(|i| t.dts(i)).collect()
    }

    #[test]
    fn runs_of_one_duration_merge_and_times_follow_them() {
        let mut t = Timeline::default();
        t.push(3, 10).unwrap();
        t.push(2, 10).unwrap();
        t.push(2, 5).unwrap();
        assert_eq!(times(&t), [0, 10, 20, 30, 40, 50, 55]);
        assert_eq!(t.iter().collect::<Vec<_>>(), times(&t));
        assert_eq!(t.end(), 60);
        assert_eq!(t.duration(4), 10);
        assert_eq!(t.duration(6), 5);
        assert_eq!(
            t.runs().len(),
            2,
            "the second push goes on with the first run"
        );
    }

    #[test]
    fn a_jump_starts_a_new_run_and_may_go_back() {
        let mut t = Timeline::default();
        t.push(2, 10).unwrap();
        t.jump_to(100);
        t.push(2, 10).unwrap();
        t.jump_to(5);
        t.push(1, 10).unwrap();
        assert_eq!(times(&t), [0, 10, 100, 110, 5]);
        assert_eq!(t.duration(1), 90);
        assert_eq!(t.end(), 15);
    }

    #[test]
    fn truncating_ends_at_the_first_sample_dropped() {
        let mut t = Timeline::default();
        t.push(3, 10).unwrap();
        t.push(3, 20).unwrap();
        t.truncate(4);
        assert_eq!(times(&t), [0, 10, 20, 30]);
        assert_eq!(t.end(), 50);
        t.truncate(2);
        assert_eq!(t.runs().len(), 1);
        assert_eq!(t.end(), 20);
    }

    #[test]
    fn blocks_stay_right_through_pushes_and_truncation() {
        let block = 1usize << BLOCK_SHIFT;
        // Runs of 10 to block + 100, of 20 for 50 samples, of 30 to 3 blocks.
        let (first, second) = (block + 100, block + 150);
        let mut t = Timeline::default();
        t.push(first as u32, 10).unwrap();
        t.push(50, 20).unwrap();
        t.push((3 * block - second) as u32, 30).unwrap();
        t.compact();
        let expect = |i: usize| -> i64 {
            let i = i as i64;
            let (first, second) = (first as i64, second as i64);
            match i {
                i if i < first => i * 10,
                i if i < second => first * 10 + (i - first) * 20,
                i => first * 10 + 50 * 20 + (i - second) * 30,
            }
        };
        for i in (0..t.len())
            .step_by(97)
            .chain([first, second - 1, second, t.len() - 1])
        {
            assert_eq!(t.dts(i), expect(i), "{i}");
        }
        // Runs added after the blocks were made are found too.
        let end = t.len();
        t.jump_to(1 << 40);
        t.push(3, 1).unwrap();
        assert_eq!(t.dts(end + 1), (1 << 40) + 1);
        // Cut inside the second run: the third, which the third block
        // named, is gone.
        t.truncate(block + 120);
        assert_eq!(t.dts(block + 110), expect(block + 110));
        assert_eq!(t.iter_from(block + 110).next(), Some(expect(block + 110)));
        assert_eq!(t.end(), expect(block + 120));
    }

    /// Random pushes, jumps, compactions and cuts, against a plain list
    /// of times.
    #[test]
    fn any_sequence_of_changes_gives_the_times_a_list_would() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |below: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % below
        };
        for _ in 0..40 {
            let (mut t, mut model, mut end) = (Timeline::default(), Vec::<i64>::new(), 0i64);
            for _ in 0..30 {
                match next(10) {
                    0 => {
                        end = next(1 << 20) as i64;
                        t.jump_to(end);
                    }
                    1 => t.compact(),
                    2 if !model.is_empty() => {
                        let len = next(model.len() as u64 + 1) as usize;
                        if len < model.len() {
                            end = model[len];
                        }
                        model.truncate(len);
                        t.truncate(len);
                    }
                    _ => {
                        // Long runs or runs of a sample, as CFR and VFR.
                        let count = if next(2) == 0 { next(6000) } else { 1 } as u32;
                        let duration = next(4) as u32 * 500;
                        for _ in 0..count {
                            model.push(end);
                            end += i64::from(duration);
                        }
                        t.push(count, duration).unwrap();
                    }
                }
                assert_eq!((t.len(), t.end()), (model.len(), end));
            }
            let all: Vec<i64> = (0..t.len()).map(|i| t.dts(i)).collect();
            assert_eq!(all, model);
            assert_eq!(t.iter().collect::<Vec<_>>(), model);
            let from = next(model.len() as u64 + 1) as usize;
            assert_eq!(t.iter_from(from).collect::<Vec<_>>(), model[from..]);
            let back = Timeline::from_runs(t.runs(), t.len(), t.end()).unwrap();
            assert_eq!(back.iter().collect::<Vec<_>>(), model);
        }
    }

    #[test]
    fn a_run_a_sample_becomes_one_time_a_sample_with_the_same_times() {
        let mut t = Timeline::default();
        for d in [3, 4, 3, 5, 4, 3] {
            t.push(1, d).unwrap();
        }
        let before = times(&t);
        t.compact();
        assert!(matches!(t.times, Times::Each(_)));
        assert_eq!(times(&t), before);
        assert_eq!(t.iter().collect::<Vec<_>>(), before);
        assert_eq!(t.memory_bytes(), 6 * 8);
        let back = Timeline::from_runs(t.runs(), t.len(), t.end()).unwrap();
        assert_eq!(times(&back), before);
    }

    #[test]
    fn times_beyond_i64_are_refused() {
        let mut t = Timeline::starting_at(i64::MAX - 100);
        assert_eq!(t.push(2, 100), Err(Overflow));
        assert!(t.is_empty());
        let runs = vec![Run {
            first: 0,
            duration: u32::MAX,
            dts: i64::MAX - i64::from(u32::MAX),
        }];
        assert!(Timeline::from_runs(runs.clone(), 2, 0).is_some());
        assert!(Timeline::from_runs(runs, 3, 0).is_none());
    }

    #[test]
    fn runs_that_are_not_a_timeline_are_refused() {
        let run = |first| Run {
            first,
            duration: 1,
            dts: 0,
        };
        assert!(
            Timeline::from_runs(vec![run(1)], 2, 0).is_none(),
            "not from 0"
        );
        assert!(
            Timeline::from_runs(vec![run(0), run(0)], 2, 0).is_none(),
            "repeated"
        );
        assert!(
            Timeline::from_runs(vec![run(0), run(2)], 2, 0).is_none(),
            "past the end"
        );
        assert!(
            Timeline::from_runs(vec![], 2, 0).is_none(),
            "no run for samples"
        );
        assert!(Timeline::from_runs(vec![], 0, 7).is_some());
    }
}
