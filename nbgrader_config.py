# nbgrader 0.9.6 configuration of the course, for the release only (`make release`, which calls
# coursetools.assign: nbgrader's generate_assignment strips solutions and hidden tests).
# Grading does not use nbgrader (its autograde runs the tests in the student's own kernel): `make grade`
# runs each notebook in a sandbox and decides the scores outside it. See book/instructors.md.
#
# Layout: the course folder is the repository. One chapter folder under book/ is one assignment:
#   book/<chapter>/*.ipynb                 the instructor's notebooks (solutions, hidden tests)
#   dist/release/<chapter>/                the student release (made again by every `make release`)
#   dist/grading/                          results, adjustments, grades.csv, feedback (`make clean` keeps it)
# dist/ is generated and gitignored.
import os

c = get_config()  # noqa: F821  (provided by nbgrader when it loads this file)

_root = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.root = _root
c.CourseDirectory.source_directory = "book"
c.CourseDirectory.release_directory = os.path.join("dist", "release")
# `make release` passes --no-db: the release needs no gradebook. Were an nbgrader command run by hand, its
# database goes under dist/ too, never next to the sources.
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(_root, "dist", "nbgrader.db")

# An assignment is the chapter's notebooks only: the book's .md pages and build debris stay out.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.md", "_build"]
