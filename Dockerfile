# revassure: the Django back office (web) and its django-q2 workers (same image,
# `python manage.py qcluster`), the notify cluster that sends alerts and waiting
# notices apart from the workers that apply money (same image, one process:
# `Q_CLUSTER_NAME=revassure-notify python manage.py qcluster`), and the real-time
# watcher (same image, one process: `python manage.py watch_ledger`,
# docs/realtime.md). Configuration comes from the environment only.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/revassure-metrics

RUN groupadd --system app && useradd --system --gid app --home-dir /app --shell /usr/sbin/nologin app
WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=app:app . .
# collectstatic needs settings that import; the key is a build-time throwaway.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput

USER app
EXPOSE 8000
# gunicorn.conf.py wipes PROMETHEUS_MULTIPROC_DIR at start and marks exited
# workers dead; give both qclusters the same directory (a shared volume) so one
# scrape sums web and worker counters.
CMD ["gunicorn", "revassure.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
