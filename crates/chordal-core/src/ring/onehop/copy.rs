//! Copying a successor's membership table in pages (at a join, and
//! when the digests differ): what we lack is added, what only we have
//! is probed.

use super::*;

impl OneHop {
    pub(super) fn start_pull(&mut self, now: Time, from: NodeRef) {
        if self.refresh_at.is_none() {
            // The first copy, at a join: compare again soon, for the
            // joins made at the same time, whose announcements passed us
            // by before anyone knew us.
            let soon = (self.interval * 10).min(self.refresh);
            self.refresh_at = Some(now + soon);
        }
        if self.pull.is_some() {
            return;
        }
        let req = self.next_req;
        self.next_req += 1;
        self.pull = Some(Pull {
            req,
            from,
            last: None,
            only_ours: Vec::new(),
            deadline: now + PULL_TIMEOUT,
        });
        let digest = Some(self.table.digest());
        self.out.push_back((
            from.into(),
            Message::GetMembers {
                req,
                after: None,
                digest,
                slices: self.table.slice_digests(),
            },
        ));
    }

    /// A page of the successor's table (answer `req` from `from`).
    pub(super) fn on_page(&mut self, now: Time, from: NodeRef, req: u64, page: MembersPage) {
        let MembersPage {
            nodes,
            more,
            same,
            slices,
        } = page;
        let Some(mut pull) = self
            .pull
            .take()
            .filter(|p| p.req == req && p.from.addr == from.addr)
        else {
            return;
        };
        if same {
            return;
        }
        self.stats.entries_copied += nodes.len() as u64;
        // Ours between the previous page and the end of this one (or of
        // the table, on the last page) that the page lacks.
        let end = if more {
            nodes.last().map(|n| n.id)
        } else {
            None
        };
        let theirs: std::collections::BTreeSet<Id> = nodes.iter().map(|n| n.id).collect();
        let mine = self.table.iter().filter(|n| {
            pull.last.is_none_or(|l| n.id > l)
                && end.is_none_or(|e| n.id <= e)
                && slices & (1 << slice_of(&n.id)) != 0
                && n.addr != self.me
        });
        let lacking = mine.filter(|n| !theirs.contains(&n.id));
        let room = MAX_PROBES.saturating_sub(pull.only_ours.len());
        let lacking: Vec<NodeRef> = lacking.take(room).collect();
        pull.only_ours.extend(lacking);
        for n in nodes {
            if self.departed_lately(now, &n) || self.table.contains(&n) {
                continue;
            }
            if self.verify {
                let claim = Claim::Live {
                    forward: None,
                    copied: true,
                };
                self.check(now, n, claim, from.addr);
            } else {
                self.alive(n);
            }
        }
        if more && let Some(last) = end {
            let req = self.next_req;
            self.next_req += 1;
            pull.req = req;
            pull.last = Some(last);
            pull.deadline = now + PULL_TIMEOUT;
            let msg = Message::GetMembers {
                req,
                after: Some(last),
                digest: None,
                slices: self.table.slice_digests(),
            };
            self.out.push_back((pull.from.into(), msg));
            self.pull = Some(pull);
            return;
        }
        self.stats.copies += 1;
        for n in pull.only_ours {
            self.probe(now, n);
        }
    }
}
