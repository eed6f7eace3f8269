"""MiniPong: a small Pong written with numpy that renders preprocessed observations directly.

The agent's paddle is on the right, a scripted opponent with limited paddle speed on the left, as in ALE Pong.
Observations have the format of ALE after the Atari preprocessing: uint8 ``[4, S, S]``, the 4 newest grayscale
frames, oldest first. The game knows its objects exactly, so its object masks are ground truth.

Three variations, mirroring the Pong variations of the ATOM paper (Beylier et al. 2024), each teaching a
distinct behaviour:

- ``MiniPong-v0``: +1 when the opponent misses, -1 when the agent misses. Beating the opponent takes angled
  returns (a hit off the paddle's centre sends the ball steeply, faster than the opponent's paddle can follow).
- ``MiniPong-Touch-v0``: +1 for each return of the ball, -1 for a miss, nothing when the opponent misses:
  returning the ball is what counts, not scoring.
- ``MiniPong-TwoBall-v0``: a second, dimmer ball (the decoy) bounces around as well; only the bright ball scores
  and only it is followed by the opponent. Playing well means telling the balls apart by shade.

Every variation ends after ``points`` points (the decoy scores none) or is truncated after ``max_steps`` steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces

from interp.envs.masks import Box, boxes_to_masks

FIELD = 84  # the game is played and rendered on an 84 x 84 grid
PADDLE_W, PADDLE_H = 2, 12
BALL = 2  # ball side
PLAYER_X, ENEMY_X = 78, 4  # left columns of the paddles
PLAYER_SPEED = 3.0
SERVE_VX, MAX_VX, VX_GAIN = 1.6, 3.2, 0.12  # the ball speeds up a little at every return
MAX_VY = 3.0  # vertical speed after a hit at the paddle's very edge
SHADE = {"player": 180, "enemy": 120, "ball": 255, "decoy": 90}
ACTIONS = ("NOOP", "UP", "DOWN")

VARIANTS = ("standard", "touch", "twoball")


@dataclass
class Ball:
    x: float = 0.0
    y: float = 0.0
    vx: float = 0.0
    vy: float = 0.0


@dataclass
class MiniPongConfig:
    """Rules of one MiniPong game."""

    variant: str = "standard"
    """one of ``VARIANTS``"""
    points: int = 5
    """points played per episode"""
    max_steps: int = 4000
    """truncation limit per episode"""
    enemy_speed: float = 1.5
    """the opponent's paddle speed in pixels per step (the ball reaches up to ``MAX_VY`` vertically)"""
    frame_size: int = 84
    """side of the square observation"""

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown MiniPong variant {self.variant!r}; expected one of {VARIANTS}")
        whole = all(isinstance(v, int) and not isinstance(v, bool) for v in (self.points, self.max_steps,
                                                                             self.frame_size))
        if not whole or self.points < 1 or self.max_steps < 1 or self.frame_size < 8:
            raise ValueError("points and max_steps must be whole numbers >= 1 and frame_size at least 8, got "
                             f"{self.points!r}, {self.max_steps!r}, {self.frame_size!r}")
        if not (isinstance(self.enemy_speed, int | float) and math.isfinite(self.enemy_speed) and self.enemy_speed > 0):
            raise ValueError(f"enemy_speed must be a finite number > 0, got {self.enemy_speed!r}")


class MiniPongGame:
    """Game state and rules of one MiniPong game, in plain Python scalars (fast for one game)."""

    def __init__(self, config: MiniPongConfig, rng: np.random.Generator):
        self.config = config
        self.rng = rng
        self.ball_names = ("ball", "decoy") if config.variant == "twoball" else ("ball",)
        self.balls = {name: Ball() for name in self.ball_names}
        self.player_y = self.enemy_y = 0.0
        self.points_played = self.steps = 0
        self.events: dict[str, str | None] = {}

    def reset(self) -> None:
        self.player_y = self.enemy_y = (FIELD - PADDLE_H) / 2
        self.points_played = self.steps = 0
        for name in self.ball_names:
            self._serve(name)
        self.events = dict.fromkeys(self.ball_names)

    def _serve(self, name: str) -> None:
        ball = self.balls[name]
        ball.x = (FIELD - BALL) / 2
        ball.y = float(self.rng.uniform(8, FIELD - 8 - BALL))
        # the scoring ball always comes to the agent first; the decoy goes either way
        ball.vx = SERVE_VX if name == "ball" or self.rng.random() < 0.5 else -SERVE_VX
        ball.vy = float(self.rng.uniform(-1.5, 1.5))

    def step(self, action: int) -> tuple[float, bool, bool]:
        """Advance one step; returns (reward, terminated, truncated)."""
        if action == 1:
            self.player_y = max(self.player_y - PLAYER_SPEED, 0.0)
        elif action == 2:
            self.player_y = min(self.player_y + PLAYER_SPEED, FIELD - PADDLE_H)
        self._move_enemy()

        reward = 0.0
        variant = self.config.variant
        for name in self.ball_names:
            outcome = self._move_ball(self.balls[name])
            self.events[name] = outcome if outcome in ("hit", "miss") else None
            if outcome is None:
                continue
            if name == "decoy":
                if outcome in ("miss", "enemy_miss"):
                    self._serve(name)
                continue
            if outcome == "hit":
                reward += 1.0 if variant == "touch" else 0.0
            elif outcome == "miss":
                reward -= 1.0
            elif outcome == "enemy_miss":
                reward += 0.0 if variant == "touch" else 1.0
            if outcome in ("miss", "enemy_miss"):
                self.points_played += 1
                self._serve(name)

        self.steps += 1
        terminated = self.points_played >= self.config.points
        truncated = not terminated and self.steps >= self.config.max_steps
        return reward, terminated, truncated

    def _move_enemy(self) -> None:
        ball = self.balls["ball"]
        # follows the scoring ball while it approaches, otherwise drifts back to the centre
        centre = ball.y + BALL / 2 if ball.vx < 0 else FIELD / 2
        delta = centre - (self.enemy_y + PADDLE_H / 2)
        speed = self.config.enemy_speed
        self.enemy_y = min(max(self.enemy_y + min(max(delta, -speed), speed), 0.0), FIELD - PADDLE_H)

    def _move_ball(self, ball: Ball) -> str | None:
        """Move a ball; returns 'hit', 'miss' (agent side), 'enemy_hit', 'enemy_miss' or None."""
        ball.x += ball.vx
        ball.y += ball.vy
        if ball.y < 0:
            ball.y, ball.vy = -ball.y, -ball.vy
        elif ball.y > FIELD - BALL:
            ball.y, ball.vy = 2 * (FIELD - BALL) - ball.y, -ball.vy
        if ball.vx > 0 and ball.x + BALL >= PLAYER_X:
            return "hit" if self._bounce(ball, self.player_y, PLAYER_X - BALL) else "miss"
        if ball.vx < 0 and ball.x <= ENEMY_X + PADDLE_W:
            return "enemy_hit" if self._bounce(ball, self.enemy_y, ENEMY_X + PADDLE_W) else "enemy_miss"
        return None

    @staticmethod
    def _bounce(ball: Ball, paddle_y: float, contact_x: float) -> bool:
        """Return the ball off a paddle if they overlap vertically; the hit offset sets the new angle."""
        offset = (ball.y + BALL / 2) - (paddle_y + PADDLE_H / 2)
        reach = (PADDLE_H + BALL) / 2
        if abs(offset) >= reach:
            return False
        speed = min(abs(ball.vx) + VX_GAIN, MAX_VX)
        ball.vx = -speed if ball.vx > 0 else speed
        ball.vy = MAX_VY * offset / reach
        ball.x = contact_x
        return True

    def boxes(self) -> dict[str, Box]:
        """Object boxes ``(x, y, w, h)`` on the 84 x 84 field, at rendered (rounded) positions."""
        boxes = {
            "player": (PLAYER_X, round(self.player_y), PADDLE_W, PADDLE_H),
            "enemy": (ENEMY_X, round(self.enemy_y), PADDLE_W, PADDLE_H),
        }
        for name in self.ball_names:
            ball = self.balls[name]
            boxes[name] = (round(ball.x), round(ball.y), BALL, BALL)
        return boxes

    def render(self, out: np.ndarray) -> None:
        """Draw the current frame into ``out`` (uint8 ``[84, 84]``); later objects are drawn on top."""
        out.fill(0)
        boxes = self.boxes()
        for name in ("decoy", "enemy", "player", "ball"):
            if name in boxes:
                x, y, w, h = boxes[name]
                out[y : y + h, x : x + w] = SHADE[name]


def _restart(game: MiniPongGame, frames: np.ndarray) -> None:
    """Reset the game and fill its frame stack ``[4, 84, 84]`` with the first frame."""
    game.reset()
    game.render(frames[-1])
    frames[:-1] = frames[-1]


def _advance(game: MiniPongGame, frames: np.ndarray, action: int) -> tuple[float, bool, bool]:
    """Step the game and push the new frame onto its stack (oldest first)."""
    reward, terminated, truncated = game.step(action)
    frames[:-1] = frames[1:]
    game.render(frames[-1])
    return reward, terminated, truncated


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    """Copy of a stack ``[..., 4, 84, 84]`` at ``size`` x ``size`` (area-averaged, as ALE preprocessing)."""
    if size == FIELD:
        return frames.copy()
    flat = frames.reshape(-1, FIELD, FIELD)
    small = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in flat])
    return small.reshape(*frames.shape[:-2], size, size)


class MiniPongEnv(gym.Env):
    """One MiniPong game as a gymnasium environment.

    Observation: uint8 ``[4, S, S]``, oldest frame first. Actions: 0 NOOP, 1 UP, 2 DOWN.
    ``info["object_masks"]`` (with ``object_masks=True``): object name -> bool ``[S, S]`` for the newest frame.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, config: MiniPongConfig | None = None, *, object_masks: bool = False,
                 render_mode: str | None = "rgb_array"):
        self.config = config or MiniPongConfig()
        self.object_masks = object_masks
        self.render_mode = render_mode
        size = self.config.frame_size
        self.observation_space = spaces.Box(0, 255, (4, size, size), dtype=np.uint8)
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.object_names = ("player", "enemy", *(("ball", "decoy") if self.config.variant == "twoball"
                                                   else ("ball",)))
        self._frames = np.zeros((4, FIELD, FIELD), dtype=np.uint8)
        self.game: MiniPongGame | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.game = MiniPongGame(self.config, self.np_random)
        _restart(self.game, self._frames)
        return _resize(self._frames, self.config.frame_size), self._info()

    def step(self, action):
        if self.game is None:
            raise RuntimeError("call reset() before step()")
        reward, terminated, truncated = _advance(self.game, self._frames, int(action))
        return _resize(self._frames, self.config.frame_size), reward, terminated, truncated, self._info()

    def _info(self) -> dict:
        info = {"points_played": self.game.points_played, "ball_events": dict(self.game.events)}
        if self.object_masks:
            info["object_masks"] = boxes_to_masks(self.game.boxes(), (FIELD, FIELD), self.config.frame_size)
        return info

    def render(self) -> np.ndarray:
        """RGB ``[84, 84, 3]`` of the newest frame (the game has no colours, so the gray is repeated)."""
        return np.repeat(self._frames[-1][:, :, None], 3, axis=2)


class MiniPongVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` MiniPong games stepped as one batch, with next-step autoreset (as ale-py's vector env).

    Observations uint8 ``[num_envs, 4, S, S]``; the games draw straight into one shared frame buffer.
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int, config: MiniPongConfig | None = None):
        self.config = config or MiniPongConfig()
        self.num_envs = num_envs
        size = self.config.frame_size
        self.single_observation_space = spaces.Box(0, 255, (4, size, size), dtype=np.uint8)
        self.single_action_space = spaces.Discrete(len(ACTIONS))
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._frames = np.zeros((num_envs, 4, FIELD, FIELD), dtype=np.uint8)
        self._needs_reset = np.zeros(num_envs, dtype=bool)
        self.games: list[MiniPongGame] = []

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        self.games = [MiniPongGame(self.config, np.random.default_rng(s)) for s in seeds]
        for game, frames in zip(self.games, self._frames, strict=True):
            _restart(game, frames)
        self._needs_reset[:] = False
        return _resize(self._frames, self.config.frame_size), {}

    def step(self, actions):
        if not self.games:
            raise RuntimeError("call reset() before step()")
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        for i, (game, frames) in enumerate(zip(self.games, self._frames, strict=True)):
            if self._needs_reset[i]:  # the step after an episode's end starts the next one; the action is unused
                _restart(game, frames)
            else:
                rewards[i], terminated[i], truncated[i] = _advance(game, frames, int(actions[i]))
        self._needs_reset = terminated | truncated
        return _resize(self._frames, self.config.frame_size), rewards, terminated, truncated, {}
