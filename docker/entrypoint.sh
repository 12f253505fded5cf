#!/bin/sh
# The container's roles. Settings come from the environment (see docs/configuration.md).
#   web         migrate, collectstatic, then gunicorn on :8000
#   worker-cpu  Celery worker on the cpu queue (imports, statistics, reports): prefork, one process per core
#   worker-gpu  Celery worker on the gpu queue (training, embedding, indexing): solo pool, one run at a time
#   (both command lines come from core/workers.py, the one definition; `manage.py worker --help`)
#   demo        the demo collections and accounts (once), then the web server
#   anything else is run as a command, e.g. `python manage.py createsuperuser`
set -eu

role="${1:-web}"
case "$role" in
  web)
    python manage.py migrate --noinput
    python manage.py collectstatic --noinput --verbosity 0
    exec gunicorn config.wsgi --bind "0.0.0.0:${PORT:-8000}" \
      --workers "${WEB_WORKERS:-4}" --worker-class gthread --threads "${WEB_THREADS:-4}" \
      --access-logfile - --timeout 120
    ;;
  worker-cpu)
    exec python manage.py worker cpu
    ;;
  worker-gpu)
    exec python manage.py worker gpu
    ;;
  demo)
    python manage.py migrate --noinput
    python manage.py demo --setup-only
    shift
    exec "$0" web
    ;;
  *)
    exec "$@"
    ;;
esac
