-- Demo data for `make run`: the class of the demo lesson, which `make demo` fills (scripts/demo.py).
-- 28 seats: 24 enrolled students with a seat (seats 5, 12, 19 and 26 stay empty), 2 enrolled without
-- one. The teacher, ms-rivera, is not a row: a teacher joins with its own token. Each `make run`
-- loads it again, replacing whatever an earlier version of it left.
BEGIN;
DELETE FROM student_attend WHERE lesson_id = 'demo-lesson';
DELETE FROM lesson WHERE id = 'demo-lesson';
INSERT INTO lesson (id, seat_count) VALUES ('demo-lesson', 28);
INSERT INTO student_attend (lesson_id, student_id, seat) VALUES
    ('demo-lesson', 'ada', 1),
    ('demo-lesson', 'ben', 2),
    ('demo-lesson', 'chen', 3),
    ('demo-lesson', 'dana', 4),
    ('demo-lesson', 'emil', 6),
    ('demo-lesson', 'fatima', 7),
    ('demo-lesson', 'goran', 8),
    ('demo-lesson', 'hana', 9),
    ('demo-lesson', 'ivan', 10),
    ('demo-lesson', 'jana', 11),
    ('demo-lesson', 'kofi', 13),
    ('demo-lesson', 'lena', 14),
    ('demo-lesson', 'mateo', 15),
    ('demo-lesson', 'nia', 16),
    ('demo-lesson', 'oscar', 17),
    ('demo-lesson', 'priya', 18),
    ('demo-lesson', 'quinn', 20),
    ('demo-lesson', 'rosa', 21),
    ('demo-lesson', 'sami', 22),
    ('demo-lesson', 'tara', 23),
    ('demo-lesson', 'umar', 24),
    ('demo-lesson', 'vera', 25),
    ('demo-lesson', 'wen', 27),
    ('demo-lesson', 'yara', 28),
    ('demo-lesson', 'xavi', NULL),
    ('demo-lesson', 'zoe', NULL);
COMMIT;
