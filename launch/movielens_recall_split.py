#!/usr/bin/env python3
"""Leave-last-out split of MovieLens ratings for the recall example (standard library only).

  python3 launch/movielens_recall_split.py [--data ../shared/data/movielens_small]
                                           [--out runs/movielens_recall/data]

Each user's latest rating (by timestamp; ties broken by the larger movieId) is the test
item; every other rating trains. Writes into --out:
  train.csv  userId,movieId,genres,click   the training interactions (click is always 1;
                                           fmps samples the negatives)
  items.csv  movieId,genres                the catalogue: every movie of movies.csv
  users.csv  userId                        every user
  test.csv   userId,movieId                the held-out item of each user
Genres are movies.csv's '|'-separated list (a multi-valued column).
"""
import argparse
import csv
import os


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/movielens_small")
    p.add_argument("--out", default="runs/movielens_recall/data")
    a = p.parse_args()
    with open(os.path.join(a.data, "movies.csv"), newline="", encoding="utf-8") as f:
        movies = [(int(r["movieId"]), r["genres"]) for r in csv.DictReader(f)]
    genres = dict(movies)
    by_user = {}
    with open(os.path.join(a.data, "ratings.csv"), newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            by_user.setdefault(int(r["userId"]), []).append((int(r["timestamp"]), int(r["movieId"])))
    os.makedirs(a.out, exist_ok=True)
    n_train = 0
    with open(os.path.join(a.out, "train.csv"), "w", newline="") as tr, \
            open(os.path.join(a.out, "test.csv"), "w", newline="") as te:
        wtr, wte = csv.writer(tr, lineterminator="\n"), csv.writer(te, lineterminator="\n")
        wtr.writerow(["userId", "movieId", "genres", "click"])
        wte.writerow(["userId", "movieId"])
        for user in sorted(by_user):
            rows = by_user[user]
            last = max(rows)  # latest timestamp, then the larger movieId
            wte.writerow([user, last[1]])
            for ts, movie in sorted(rows):
                if (ts, movie) == last:
                    continue
                wtr.writerow([user, movie, genres.get(movie, ""), 1])
                n_train += 1
    with open(os.path.join(a.out, "items.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["movieId", "genres"])
        for movie, g in movies:
            w.writerow([movie, g])
    with open(os.path.join(a.out, "users.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["userId"])
        for user in sorted(by_user):
            w.writerow([user])
    print(f"wrote {a.out}: {n_train} training interactions, {len(by_user)} users, "
          f"{len(movies)} items")


if __name__ == "__main__":
    main()
