import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { headFromGitDir } from '../../pipeline/runner.ts';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

function repo(): { dir: string; git: (...a: string[]) => string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gsae-git-'));
  dirs.push(dir);
  const git = (...a: string[]) => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...a], { cwd: dir, encoding: 'utf8' }).trim();
  git('init', '-q', '-b', 'main');
  fs.writeFileSync(path.join(dir, 'a.txt'), 'a');
  git('add', 'a.txt');
  git('commit', '-q', '-m', 'one');
  return { dir, git };
}

describe('headFromGitDir (the run row\'s git_commit without a git process)', () => {
  it('reads a branch from its loose ref, then from packed-refs, and a detached HEAD; equal to git rev-parse', () => {
    const { dir, git } = repo();
    expect(headFromGitDir(dir)).toBe(git('rev-parse', 'HEAD'));
    git('pack-refs', '--all');
    expect(fs.existsSync(path.join(dir, '.git', 'refs', 'heads', 'main'))).toBe(false);
    expect(headFromGitDir(dir)).toBe(git('rev-parse', 'HEAD'));
    fs.writeFileSync(path.join(dir, 'a.txt'), 'b');
    git('commit', '-q', '-am', 'two');
    const second = git('rev-parse', 'HEAD');
    git('checkout', '-q', '--detach', 'HEAD~1');
    expect(headFromGitDir(dir)).toBe(git('rev-parse', 'HEAD'));
    expect(headFromGitDir(dir)).not.toBe(second);
  });

  it('returns null where it cannot tell (no repository here, an unborn branch): git rev-parse answers then', () => {
    const plain = fs.mkdtempSync(path.join(os.tmpdir(), 'gsae-nogit-'));
    dirs.push(plain);
    expect(headFromGitDir(plain)).toBeNull();
    execFileSync('git', ['init', '-q', '-b', 'empty'], { cwd: plain });
    expect(headFromGitDir(plain)).toBeNull();
  });
});
