// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title IRatings
/// @notice Per-worker rating statistics written only by the TaskMarket that deployed them.
interface IRatings {
    /// @notice A requester's rating of a worker for one finalized task was recorded.
    event Rated(address indexed worker, uint256 indexed taskId, address indexed rater, uint8 rating);
    /// @notice The market started tracking a worker (its stats slot is now initialised).
    event WorkerTracked(address indexed worker);

    /// @notice Only the market that deployed this contract may write ratings.
    error Ratings__NotMarket(address caller);
    /// @notice A rating must be between 1 and 5.
    error Ratings__InvalidRating(uint8 rating);

    /// @notice The TaskMarket allowed to write ratings (the deployer of this contract).
    /// @return The market address.
    function market() external view returns (address);

    /// @notice Initialise a worker's stats slot so that its first rating costs no more gas than later ones.
    /// @dev Only the market; called when a worker registers. Idempotent.
    /// @param worker The worker to track.
    function track(address worker) external;

    /// @notice Record one rating of `worker` for `taskId`, given by `rater`.
    /// @dev Only the market, exactly once per finalized task (the market's state machine guarantees it).
    /// @param worker The rated worker (the task's provider).
    /// @param taskId The finalized task.
    /// @param rater The task's requester.
    /// @param rating 1..5.
    function rate(address worker, uint256 taskId, address rater, uint8 rating) external;

    /// @notice A worker's rating statistics in one call.
    /// @param worker The worker.
    /// @return sum Sum of all ratings.
    /// @return count Number of ratings.
    /// @return averageMilli Average rating times 1000 (0 when never rated).
    function stats(address worker) external view returns (uint256 sum, uint256 count, uint256 averageMilli);
}
