-- Room in each page of runs for its row's next version. Every checkpoint updates its run's
-- row (the fence, updated_at); with full pages the new version lands on another page and
-- every index of runs gets a new entry. With room left, PostgreSQL updates it in place
-- (a HOT update: no index entry, less WAL), which is every checkpoint that changes no
-- indexed column. Measured on B (4-step order saga, 3,000 runs): HOT updates 21 % -> 69 %
-- of all, 1,770 -> 1,920 sagas/s, 6,830 -> 5,645 bytes per saga. Applies to pages
-- written from now on; `VACUUM FULL runs` repacks an existing table.
ALTER TABLE runs SET (fillfactor = 70);
