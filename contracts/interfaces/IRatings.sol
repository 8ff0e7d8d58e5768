// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title IRatings
/// @notice Per-worker rating records, one for the provider role and one for the validator role, written only by
///         the TaskMarket that deployed them. Every rating weighs as much as the wei its task paid the rated
///         worker (counted in gwei), and the ranking score is a Bayesian average: a prior of 3 stars weighing
///         PRIOR_WEIGHT_GWEI, pulled towards the worker's value-weighted mean as paid work accumulates. A handful of
///         cheap self-dealt 5-star ratings barely moves it; buying a rank costs ether in proportion (the market
///         burns 1% of every paid amount).
interface IRatings {
    /// @notice The role a record is for.
    enum Role {
        Provider,
        Validator
    }

    /// @notice One role's record of a worker.
    struct Record {
        uint256 count; // ratings received
        uint256 sum; // sum of the ratings (1..5 each)
        uint256 weightGwei; // gwei paid over the rated tasks
        uint256 weightedGwei; // sum of rating x gwei paid
        uint256 averageMilli; // plain average x 1000 (0 when never rated)
        uint256 scoreMilli; // Bayesian value-weighted average x 1000 (the prior, 3000, when never rated)
    }

    /// @notice The market started tracking a worker (its record slots are initialised).
    event WorkerTracked(address indexed worker);

    /// @notice Only the market that deployed this contract may write ratings.
    error Ratings__NotMarket(address caller);
    /// @notice A rating must be between 1 and 5.
    error Ratings__InvalidRating(uint8 rating);

    /// @notice The TaskMarket allowed to write ratings (the deployer of this contract).
    /// @return The market address.
    function market() external view returns (address);

    /// @notice Initialise a worker's record slots so that its first ratings cost no more gas than later ones.
    /// @dev Only the market; called when a worker registers. Idempotent.
    /// @param worker The worker to track.
    function track(address worker) external;

    /// @notice Record a task's ratings: the provider's, and the validator's unless `validatorRating` is 0.
    /// @dev Only the market, exactly once per rated task (the market's state machine guarantees it).
    /// @param provider The task's provider.
    /// @param providerRating 1..5.
    /// @param providerPaidWei Wei the task paid the provider (the rating's weight).
    /// @param validator The task's validator.
    /// @param validatorRating 1..5, or 0 for none.
    /// @param validatorPaidWei Wei the task paid the validator.
    function rate(
        address provider,
        uint8 providerRating,
        uint256 providerPaidWei,
        address validator,
        uint8 validatorRating,
        uint256 validatorPaidWei
    ) external;

    /// @notice A worker's record in one role.
    /// @param worker The worker.
    /// @param role Provider or Validator.
    /// @return The record.
    function recordOf(address worker, Role role) external view returns (Record memory);

    /// @notice Shortcut: the provider record's count, sum and plain average (x 1000).
    /// @param worker The worker.
    /// @return sum Sum of ratings.
    /// @return count Number of ratings.
    /// @return averageMilli Plain average x 1000.
    function stats(address worker) external view returns (uint256 sum, uint256 count, uint256 averageMilli);

    /// @notice The ranking score x 1000 of a worker in a role (Bayesian value-weighted average).
    /// @param worker The worker.
    /// @param role Provider or Validator.
    /// @return The score x 1000.
    function scoreOf(address worker, Role role) external view returns (uint256);
}
