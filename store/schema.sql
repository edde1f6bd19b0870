-- The tables rollcall reads. They are owned by the platform; rollcall never writes them.
-- Loadable with `psql -f` into an empty database (and again into a loaded one).
CREATE TABLE IF NOT EXISTS lesson (
    id TEXT PRIMARY KEY,
    seat_count INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS student_attend (
    lesson_id TEXT NOT NULL REFERENCES lesson(id),
    student_id TEXT NOT NULL,
    seat INTEGER,
    PRIMARY KEY (lesson_id, student_id)
);
