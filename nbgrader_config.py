# nbgrader 0.9.6 configuration of the course (read by every `nbgrader` command run from this folder).
# Use it through `make release` and `make grade` (see book/instructors.md); they call coursetools.assign.
#
# Layout: the course folder is the repository. One chapter folder under book/ is one assignment:
#   book/<chapter>/*.ipynb                 the instructor's notebooks (solutions, hidden tests)
#   dist/release/<chapter>/                the student release
#   dist/submitted/<student>/<chapter>/    copies of the handed-in notebooks
#   dist/autograded/<student>/<chapter>/   the executed, scored notebooks
#   dist/feedback/<student>/<chapter>/     one feedback HTML per notebook
#   dist/gradebook.db                      the gradebook (SQLite)
# dist/ is generated and gitignored.
import os

c = get_config()  # noqa: F821  (provided by nbgrader when it loads this file)

_root = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.root = _root
c.CourseDirectory.source_directory = "book"
c.CourseDirectory.release_directory = os.path.join("dist", "release")
c.CourseDirectory.submitted_directory = os.path.join("dist", "submitted")
c.CourseDirectory.autograded_directory = os.path.join("dist", "autograded")
c.CourseDirectory.feedback_directory = os.path.join("dist", "feedback")
c.CourseDirectory.solution_directory = os.path.join("dist", "solution")
c.CourseDirectory.source_with_tests_directory = os.path.join("dist", "source_with_tests")
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(_root, "dist", "gradebook.db")

# An assignment is the chapter's notebooks only: the book's .md pages and build debris stay out.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.md", "_build"]

# Autograding: every cell of a submission gets at most this many seconds, then it is interrupted
# and the notebook goes on (the cell counts as an error). nbgrader's own name is Execute.timeout
# (its subclass of nbconvert's ExecutePreprocessor).
c.Execute.timeout = 60
c.Execute.interrupt_on_timeout = True
# Long printouts are cut (in lines; coursetools.assign also cuts very long single lines).
c.LimitOutput.max_lines = 1000
c.LimitOutput.max_traceback = 100
# A test cell the student deleted (or renamed) is put back from the gradebook and run.
c.OverwriteCells.add_missing_cells = True
