-- Demo data for `make run`: one lesson with 30 seats and one student with a seat.
INSERT INTO lesson (id, seat_count) VALUES ('demo-lesson', 30) ON CONFLICT (id) DO NOTHING;
INSERT INTO student_attend (lesson_id, student_id, seat) VALUES ('demo-lesson', 'demo-student', 7)
    ON CONFLICT (lesson_id, student_id) DO NOTHING;
